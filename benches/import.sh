#!/usr/bin/env bash
# Import benchmark: writes the Synthea patient bundles of tests/data/synthea-bundles replicated
# under fresh ids up to $BENCH_PATIENTS patients (default 1000; see examples/import_bench.rs),
# then on a fresh SQLite file and on a fresh PostgreSQL database (created at $BENCH_POSTGRES_URL,
# default postgres://postgres@127.0.0.1:5432/test):
#   1. `expediente import --skip-unsupported` of them all, which prints resources per second;
#   2. the same-rows floor: every row that import wrote, inserted with plain SQL into a fresh
#      database of the same schema the way the server writes (SQLite: rusqlite, one kept prepared
#      INSERT per row; PostgreSQL: INSERTs of up to 100 rows), in as many transactions as there
#      are bundles;
#   3. the JSON-row floor: the same hosted resources inserted as one JSON row each, one prepared
#      INSERT each, one transaction per bundle, into an empty table.
# Figures only: they go to docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ADMIN_URL="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
PATIENTS="${BENCH_PATIENTS:-1000}"
BATCH="${BENCH_BATCH_SIZE:-5000}"
WORK="$(mktemp -d)"
DBS=()
cleanup() {
    for db in "${DBS[@]}"; do
        psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# EXPEDIENTE_BIN runs another build of the server (to compare two builds on one machine).
if [ -z "${EXPEDIENTE_BIN:-}" ]; then
    cargo build --release --quiet --bin expediente --example import_bench
fi
BIN="${EXPEDIENTE_BIN:-target/release/expediente}"
BENCH="${EXPEDIENTE_BENCH_BIN:-target/release/examples/import_bench}"

"$BENCH" prepare --patients "$PATIENTS" --out "$WORK/bundles"
du -sh "$WORK/bundles"
BUNDLES="$(find "$WORK/bundles" -name '*.json' | wc -l)"

# Creates a database and sets PG_URL to it (not in a subshell, so cleanup knows it).
pg_db() {
    local name="expediente_bench_$1_$$"
    psql "$ADMIN_URL" -qc "CREATE DATABASE $name"
    DBS+=("$name")
    PG_URL="${ADMIN_URL%/*}/$name"
}

echo "== SQLite"
"$BIN" import --no-progress --skip-unsupported --batch-size "$BATCH" \
    --database-url "sqlite://$WORK/import.db" "$WORK/bundles"
"$BENCH" rows --from "sqlite://$WORK/import.db" --database-url "sqlite://$WORK/rows.db" --bundles "$BUNDLES"
"$BENCH" floor --database-url "sqlite://$WORK/floor.db" "$WORK/bundles"

echo "== PostgreSQL"
pg_db import
IMPORTED="$PG_URL"
"$BIN" import --no-progress --skip-unsupported --batch-size "$BATCH" \
    --database-url "$IMPORTED" "$WORK/bundles"
pg_db rows
"$BENCH" rows --from "$IMPORTED" --database-url "$PG_URL" --bundles "$BUNDLES"
pg_db floor
"$BENCH" floor --database-url "$PG_URL" "$WORK/bundles"
