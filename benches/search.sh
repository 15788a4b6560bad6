#!/usr/bin/env bash
# Search benchmark: stores $BENCH_PATIENTS patients (default 10000) with their encounters,
# observations, diagnostic reports and medication requests (Synthea extracts replicated under new
# ids, practitioners stored once), written as NDJSON and loaded with `expediente import` (the
# same transaction code as the API; BENCH_LOAD=api stores them with PUTs through the API
# instead, 8 at a time, about ten times slower), then times seven searches one request at a time:
#   Patient?name, Patient?identifier, Observation?patient&code,
#   Observation?patient&category=vital-signs&date=ge, DiagnosticReport?patient&_include=result,
#   MedicationRequest?patient&status=active, Observation?code-value-quantity=...$gt...
# each 20 times as warm-up and $BENCH_REPEAT times measured (default 200), with values drawn from
# the loaded data. Runs on a fresh SQLite file and on a fresh PostgreSQL database created at
# $BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test); statistics are refreshed
# (ANALYZE; on PostgreSQL VACUUM ANALYZE) after the load and before the searches. BENCH_ENGINES="postgres" (or "sqlite") runs one.
# Prints the load rate and, per search, the median and p99 latency, the mean number of entries
# and the count of non-200 answers. Not a test: figures go to docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ADMIN_URL="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
PATIENTS="${BENCH_PATIENTS:-10000}"
REPEAT="${BENCH_REPEAT:-200}"
WORK="$(mktemp -d)"
# The servers' audit journals stay out of the working tree.
export EXPEDIENTE_AUDIT_JOURNAL="$WORK/audit-journal"
DB=""
cleanup() {
    kill $(jobs -p) 2>/dev/null || true
    wait 2>/dev/null || true
    if [ -n "$DB" ]; then
        psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# EXPEDIENTE_BIN runs another build of the server (to compare two builds on one machine).
if [ -z "${EXPEDIENTE_BIN:-}" ]; then
    cargo build --release --quiet --bin expediente --example search_bench
fi
BIN="${EXPEDIENTE_BIN:-target/release/expediente}"
BENCH="${EXPEDIENTE_BENCH_BIN:-target/release/examples/search_bench}"

source benches/lib.sh

# run NAME DATABASE_URL ANALYZE_COMMAND...: serve DATABASE_URL, load, analyze, search, stop.
run() {
    local name="$1" url="$2" port log pid
    shift 2
    port="$(free_port)"
    log="$WORK/$name.log"
    echo
    echo "=== expediente on $name: $PATIENTS patients, $REPEAT searches each ==="
    if [ "${BENCH_LOAD:-import}" != api ]; then
        [ -d "$WORK/ndjson" ] || "$BENCH" --patients "$PATIENTS" --ndjson "$WORK/ndjson"
        "$BIN" import --no-progress --database-url "$url" "$WORK/ndjson"
    fi
    "$BIN" serve --insecure-no-auth --key-file "$WORK/key" --listen "127.0.0.1:$port" --database-url "$url" >"$log" 2>&1 &
    pid=$!
    wait_up "127.0.0.1:$port" "$log"
    if [ "${BENCH_LOAD:-import}" = api ]; then
        "$BENCH" --base "http://127.0.0.1:$port/fhir" --patients "$PATIENTS" --load --repeat 0
    fi
    if [ "$#" -gt 0 ]; then
        "$@"
    fi
    "$BENCH" --base "http://127.0.0.1:$port/fhir" --patients "$PATIENTS" --repeat "$REPEAT"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

echo "search benchmark on $(nproc) cores"

# BENCH_ENGINES picks the engines (default both).
ENGINES="${BENCH_ENGINES:-sqlite postgres}"

# SQLite
SQLITE_FILE="$WORK/bench.db"
if [[ " $ENGINES " != *" sqlite "* ]]; then
    :
elif command -v sqlite3 >/dev/null; then
    run SQLite "sqlite://$SQLITE_FILE" sqlite3 "$SQLITE_FILE" 'PRAGMA optimize; ANALYZE;'
else
    echo "(no sqlite3 command line: the SQLite database is searched without ANALYZE)"
    run SQLite "sqlite://$SQLITE_FILE"
fi

# PostgreSQL
if [[ " $ENGINES " == *" postgres "* ]]; then
    DB="expediente_bench_search_$$"
    psql "$ADMIN_URL" -qc "CREATE DATABASE $DB"
    # VACUUM too: after a bulk load, index-only scans need the visibility map that autovacuum
    # would set in time.
    run PostgreSQL "${ADMIN_URL%/*}/$DB" psql "${ADMIN_URL%/*}/$DB" -qc "VACUUM ANALYZE"
fi
