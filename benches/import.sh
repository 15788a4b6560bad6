#!/usr/bin/env bash
# Import benchmark: writes the Synthea patient bundles of tests/data/synthea-bundles replicated
# under fresh ids up to $BENCH_PATIENTS patients (default 1000; see examples/import_bench.rs),
# then on a fresh SQLite file and on a fresh PostgreSQL database (created at $BENCH_POSTGRES_URL,
# default postgres://postgres@127.0.0.1:5432/test):
#   1. `expediente import --skip-unsupported` of them all, which prints resources per second;
#   2. the plain-SQL floor: the same hosted resources inserted as JSON rows, one prepared INSERT
#      each, one transaction per bundle, into an empty database.
# Figures only: they go to docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ADMIN_URL="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
PATIENTS="${BENCH_PATIENTS:-1000}"
BATCH="${BENCH_BATCH_SIZE:-2000}"
WORK="$(mktemp -d)"
DBS=()
cleanup() {
    for db in "${DBS[@]}"; do
        psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release --quiet --bin expediente --example import_bench
BIN=target/release/expediente
BENCH=target/release/examples/import_bench

"$BENCH" prepare --patients "$PATIENTS" --out "$WORK/bundles"
du -sh "$WORK/bundles"

pg_db() {
    local name="expediente_bench_$1_$$"
    psql "$ADMIN_URL" -qc "CREATE DATABASE $name"
    DBS+=("$name")
    echo "${ADMIN_URL%/*}/$name"
}

echo "== SQLite"
"$BIN" import --no-progress --skip-unsupported --batch-size "$BATCH" \
    --database-url "sqlite://$WORK/import.db" "$WORK/bundles"
"$BENCH" floor --database-url "sqlite://$WORK/floor.db" "$WORK/bundles"

echo "== PostgreSQL"
"$BIN" import --no-progress --skip-unsupported --batch-size "$BATCH" \
    --database-url "$(pg_db import)" "$WORK/bundles"
"$BENCH" floor --database-url "$(pg_db floor)" "$WORK/bundles"
