#!/usr/bin/env bash
# Fuzz run: `bash benches/fuzz.sh [SECONDS]` (default 60). Builds the server and the fuzz example
# in release (unless $FUZZ_BIN and $FUZZ_DRIVER name builds to run), then for each engine in turn
# (a fresh SQLite file in a temporary directory; a fresh PostgreSQL database created at
# $FUZZ_POSTGRES_URL's server, default postgres://postgres@127.0.0.1:5432/test, dropped at the
# end) starts the server on a free port, lets examples/fuzz.rs send it mutated requests for
# SECONDS seconds and stops it. Both engines
# get the same inputs: one seed, $FUZZ_SEED or the clock, with $FUZZ_CONCURRENCY requests in
# flight (default 4). examples/fuzz.rs says what is sent and what counts as a finding.
# Prints, per engine, the seed, the first findings (reason, generator, method and start of the
# URL) and one summary line: requests sent, answers by status class, findings. Each finding is
# saved as one file per input under $FUZZ_OUT/<engine> (default target/fuzz-findings); the
# server's log goes to $FUZZ_OUT/<engine>.log and is not printed.
# Exits non-zero if either engine had a finding or its server died.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_ENGINE="${1:-60}"
ADMIN_URL="${FUZZ_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
OUT="${FUZZ_OUT:-target/fuzz-findings}"
SEED="${FUZZ_SEED:-$(date +%s)}"
CONCURRENCY="${FUZZ_CONCURRENCY:-4}"
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

# FUZZ_BIN and FUZZ_DRIVER run builds made elsewhere (CI fuzzes the debug builds `cargo test`
# made, instead of building again in release).
if [ -z "${FUZZ_BIN:-}" ] || [ -z "${FUZZ_DRIVER:-}" ]; then
    cargo build --release --quiet --bin expediente --example fuzz
fi
BIN="${FUZZ_BIN:-target/release/expediente}"
FUZZ="${FUZZ_DRIVER:-target/release/examples/fuzz}"
mkdir -p "$OUT"

source benches/lib.sh

FAILED=""

# run NAME DATABASE_URL: serve DATABASE_URL, fuzz it, stop it; NAME joins FAILED on a finding.
run() {
    local name="$1" url="$2" port log pid status=0
    port="$(free_port)"
    log="$OUT/$name.log"
    echo
    echo "=== expediente on $name: fuzzed for $SECONDS_PER_ENGINE s ==="
    "$BIN" serve --insecure-no-auth --key-file "$WORK/key" --listen "127.0.0.1:$port" --database-url "$url" >"$log" 2>&1 &
    pid=$!
    if ! wait_up "127.0.0.1:$port" "$log"; then
        FAILED="$FAILED $name"
        return 0
    fi
    "$FUZZ" --base "http://127.0.0.1:$port/fhir" --seconds "$SECONDS_PER_ENGINE" \
        --out "$OUT/$name" --seed "$SEED" --concurrency "$CONCURRENCY" || status=$?
    # A server that died is a zombie until waited for: ask it, rather than the process table.
    if ! curl -sf --max-time 10 "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
        echo "the server on $name no longer answers /health (its log: $log)"
        status=1
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [ "$status" -ne 0 ]; then
        FAILED="$FAILED $name"
    fi
}

echo "fuzz run on $(nproc) cores, seed $SEED (FUZZ_SEED=$SEED repeats it)"

# SQLite
run SQLite "sqlite://$WORK/fuzz.db"

# PostgreSQL
DB="expediente_fuzz_$$"
psql "$ADMIN_URL" -qc "CREATE DATABASE $DB"
run PostgreSQL "${ADMIN_URL%/*}/$DB"

echo
if [ -n "$FAILED" ]; then
    echo "findings or failures on:$FAILED (see $OUT)"
    exit 1
fi
echo "no findings"
