#!/usr/bin/env bash
# Read benchmark: GET /fhir/Patient/{id} over 300 stored Patients, 16 connections for 10 s
# (wrk, 2 threads), on SQLite and PostgreSQL, next to a bare axum handler returning the same bytes.
# Needs wrk (Debian package `wrk`) and PostgreSQL at $BENCH_POSTGRES_URL (default 127.0.0.1:5432).
# Prints requests/s, p50 and p99 for each. Not a test: figures go to docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
ADMIN_URL="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
PATIENTS="${BENCH_PATIENTS:-300}"
DURATION="${BENCH_DURATION:-10s}"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

cargo build --release --quiet --bin expediente --example ceiling
BIN=target/release/expediente

python3 - "$PATIENTS" "$WORK" <<'PY'
import json, sys
n, work = int(sys.argv[1]), sys.argv[2]
src = json.load(open("tests/data/synthea/patients.json"))
paths = []
for i in range(n):
    p = dict(src[i % len(src)])
    p["id"] = f"bench-{i}"
    json.dump(p, open(f"{work}/p{i}.json", "w"))
    paths.append(f"/fhir/Patient/bench-{i}")
with open(f"{work}/paths.lua", "w") as f:
    f.write("paths = {" + ",".join(json.dumps(p) for p in paths) + "}\n")
    f.write("request = function() return wrk.format('GET', paths[math.random(#paths)]) end\n")
PY

wait_up() { for _ in $(seq 100); do curl -sf "http://$1/health" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

load() {
    for i in $(seq 0 $((PATIENTS - 1))); do
        curl -sf -o /dev/null -X PUT -H 'content-type: application/fhir+json' \
            --data-binary "@$WORK/p$i.json" "http://$1/fhir/Patient/bench-$i"
    done
}

run_wrk() {
    local name="$1" addr="$2"
    wrk -t2 -c16 -d"$DURATION" --latency -s "$WORK/paths.lua" "http://$addr" > "$WORK/wrk.txt"
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")
    p50=$(awk '$1=="50%" {print $2}' "$WORK/wrk.txt")
    p99=$(awk '$1=="99%" {print $2}' "$WORK/wrk.txt")
    local errors
    errors=$(grep -E "Non-2xx|Socket errors" "$WORK/wrk.txt" || true)
    printf '%-28s %12s req/s   p50 %8s   p99 %8s %s\n' "$name" "$rps" "$p50" "$p99" "$errors"
}

echo "GET /fhir/Patient/{id}, $PATIENTS patients, wrk -t2 -c16 -d$DURATION on $(nproc) cores"

# SQLite
"$BIN" serve --listen 127.0.0.1:18191 --database-url "sqlite://$WORK/bench.db" >/dev/null 2>&1 &
SQLITE_PID=$!
wait_up 127.0.0.1:18191
load 127.0.0.1:18191
curl -sf http://127.0.0.1:18191/fhir/Patient/bench-0 > "$WORK/one.json"
run_wrk "expediente (SQLite)" 127.0.0.1:18191
kill "$SQLITE_PID"; wait "$SQLITE_PID" 2>/dev/null || true

# PostgreSQL
DB="expediente_bench_$$"
psql "$ADMIN_URL" -qc "CREATE DATABASE $DB"
trap 'kill $(jobs -p) 2>/dev/null || true; psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"; rm -rf "$WORK"' EXIT
"$BIN" serve --listen 127.0.0.1:18192 --database-url "${ADMIN_URL%/*}/$DB" >/dev/null 2>&1 &
PG_PID=$!
wait_up 127.0.0.1:18192
load 127.0.0.1:18192
psql "${ADMIN_URL%/*}/$DB" -qc "ANALYZE"
run_wrk "expediente (PostgreSQL)" 127.0.0.1:18192
kill "$PG_PID"; wait "$PG_PID" 2>/dev/null || true

# Ceiling: the same bytes from a bare handler.
target/release/examples/ceiling 127.0.0.1:18193 "$WORK/one.json" &
CEIL_PID=$!
sleep 0.5
run_wrk "bare axum (same bytes)" 127.0.0.1:18193
kill "$CEIL_PID"
