#!/usr/bin/env bash
# Read benchmark: GET /fhir/Patient/{id} over 300 stored Patients, 16 connections (wrk, 2
# threads), on SQLite and PostgreSQL, next to a bare axum handler returning the same bytes.
# BENCH_RESOURCE=Observation reads 300 Synthea Observations instead (vital signs and results
# mixed, with their patients and encounters stored first).
# Needs wrk (Debian package `wrk`) and PostgreSQL at $BENCH_POSTGRES_URL (default 127.0.0.1:5432).
# On each engine the same data is served three times (on SQLite each server has its own copy of
# the loaded file; on PostgreSQL they share the database): with --insecure-no-auth; as deployed, with
# a valid access token (a backend client's, system/*.rs) on every request and every read audited;
# and the same with auditing off for the measurement only (--no-audit-for-measurement). They are
# run in turn, round after round (BENCH_ROUNDS, default 10, of BENCH_DURATION each, default 4 s;
# every other round in the reverse order), so that the costs of authorization and of audit are
# read side by side: this machine's speed drifts by more than those costs from one minute to the
# next, so each round's three runs are compared with each other and the medians of the rounds'
# ratios are printed.
# Prints requests/s, p50 and p99 for each run. Not a test: figures go to docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
ADMIN_URL="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
PATIENTS="${BENCH_PATIENTS:-300}"
RESOURCE="${BENCH_RESOURCE:-Patient}"
DURATION="${BENCH_DURATION:-4s}"
ROUNDS="${BENCH_ROUNDS:-10}"
WORK="$(mktemp -d)"
# The servers' audit journals stay out of the working tree.
export EXPEDIENTE_AUDIT_JOURNAL="$WORK/audit-journal"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

cargo build --release --quiet --bin expediente --example ceiling
BIN=target/release/expediente

python3 - "$PATIENTS" "$WORK" "$RESOURCE" <<'PY'
import json, sys
n, work, resource = int(sys.argv[1]), sys.argv[2], sys.argv[3]
load, paths = [], []
def put(r, path):
    f = f"{work}/r{len(load)}.json"
    json.dump(r, open(f, "w"))
    load.append(f"{path} {f}")
def local(r, key, rt):
    ref = r.get(key, {}).get("reference")
    if ref:
        r[key] = dict(r[key], reference=ref.replace("urn:uuid:", rt + "/"))
if resource == "Patient":
    src = json.load(open("tests/data/synthea/patients.json"))
    for i in range(n):
        p = dict(src[i % len(src)])
        p["id"] = f"bench-{i}"
        put(p, f"/fhir/Patient/bench-{i}")
        paths.append(f"/fhir/Patient/bench-{i}")
else:
    for p in json.load(open("tests/data/synthea/patients.json")):
        put({"resourceType": "Patient", "id": p["id"]}, f"/fhir/Patient/{p['id']}")
    for e in json.load(open("tests/data/synthea/encounters.json")):
        local(e, "subject", "Patient")
        put(e, f"/fhir/Encounter/{e['id']}")
    for o in json.load(open("tests/data/synthea/observations.json"))[:n]:
        local(o, "subject", "Patient")
        local(o, "encounter", "Encounter")
        put(o, f"/fhir/Observation/{o['id']}")
        paths.append(f"/fhir/Observation/{o['id']}")
open(f"{work}/load.txt", "w").write("\n".join(load) + "\n")
with open(f"{work}/paths.lua", "w") as f:
    f.write("paths = {" + ",".join(json.dumps(p) for p in paths) + "}\n")
    f.write("request = function() return wrk.format('GET', paths[math.random(#paths)]) end\n")
open(f"{work}/first.txt", "w").write(paths[0])
PY

wait_up() { for _ in $(seq 100); do curl -sf "http://$1/health" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

load() {
    while read -r path file; do
        curl -sf -o /dev/null -X PUT -H 'content-type: application/fhir+json' \
            --data-binary "@$file" "http://$1$path"
    done < "$WORK/load.txt"
}

# The CPU time a process has used (all its threads, user and system), in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run_wrk() {
    local name="$1" addr="$2" script="${3:-$WORK/paths.lua}"
    local pid before
    pid=$(pgrep -f -- "--listen $addr" | head -1 || true)
    [ -n "$pid" ] && before=$(cpu_ticks "$pid")
    wrk -t2 -c16 -d"$DURATION" --latency -s "$script" "http://$addr" > "$WORK/wrk.txt"
    # What the server does after the last answer (an audit batch) is its cost too, and must not
    # slow the next run: wait for it.
    sleep 1.5
    local rps p50 p99 requests cpu=""
    rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")
    p50=$(awk '$1=="50%" {print $2}' "$WORK/wrk.txt")
    p99=$(awk '$1=="99%" {print $2}' "$WORK/wrk.txt")
    requests=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
    LAST_CPU=0
    if [ -n "$pid" ] && [ "${requests:-0}" -gt 0 ]; then
        LAST_CPU=$(( ($(cpu_ticks "$pid") - before) * 1000000 / $(getconf CLK_TCK) / requests ))
        cpu="   cpu ${LAST_CPU} us/req"
    fi
    local errors
    errors=$(grep -E "Non-2xx|Socket errors" "$WORK/wrk.txt" || true)
    printf '%-28s %12s req/s   p50 %8s   p99 %8s%s %s\n' "$name" "$rps" "$p50" "$p99" "$cpu" "$errors"
    LAST_RPS="$rps"
}

# Serves the database at $2 on $1 as deployed (with $4 added to its flags), and writes a script
# sending a token for it to $WORK/$5.lua.
secured() {
    local addr="$1" db="$2" key="$3" flags="$4" script="$5"
    # shellcheck disable=SC2086
    "$BIN" serve --key-file "$key" --listen "$addr" --database-url "$db" $flags >/dev/null 2>&1 &
    SECURE_PIDS="${SECURE_PIDS:-} $!"
    wait_up "$addr"
    "$BIN" client add --client-id bench --public --scope 'system/*.rs' --database-url "$db" >/dev/null 2>&1 || true
    local token
    token=$("$BIN" token --client-id bench --scope 'system/*.rs' --audience "http://$addr/fhir" \
        --key-file "$key" --database-url "$db")
    { cat "$WORK/paths.lua"; echo "wrk.headers['Authorization'] = 'Bearer $token'"; } > "$WORK/$script.lua"
    curl -sf -o /dev/null -H "Authorization: Bearer $token" "http://$addr$(cat "$WORK/first.txt")"
}

# The servers of one engine, in turn, round after round; then the medians of the rounds' ratios.
side_by_side() {
    local engine="$1" open="$2" secure="$3" unaudited="$4" round
    : > "$WORK/rounds"
    for round in $(seq "$ROUNDS"); do
        local o a u oc ac uc
        if (( round % 2 )); then
            run_wrk "$engine, no auth ($round)" "$open"; o="$LAST_RPS"; oc="$LAST_CPU"
            run_wrk "$engine, token+audit ($round)" "$secure" "$WORK/token.lua"; a="$LAST_RPS"; ac="$LAST_CPU"
            run_wrk "$engine, token, no audit ($round)" "$unaudited" "$WORK/unaudited.lua"; u="$LAST_RPS"; uc="$LAST_CPU"
        else
            run_wrk "$engine, token, no audit ($round)" "$unaudited" "$WORK/unaudited.lua"; u="$LAST_RPS"; uc="$LAST_CPU"
            run_wrk "$engine, token+audit ($round)" "$secure" "$WORK/token.lua"; a="$LAST_RPS"; ac="$LAST_CPU"
            run_wrk "$engine, no auth ($round)" "$open"; o="$LAST_RPS"; oc="$LAST_CPU"
        fi
        echo "$o $a $u $oc $ac $uc" >> "$WORK/rounds"
    done
    python3 - "$engine" "$WORK/rounds" <<'PY'
import statistics, sys
engine, rows = sys.argv[1], [list(map(float, l.split())) for l in open(sys.argv[2]) if l.strip()]
med = lambda xs: statistics.median(xs)
audit = [r[1] / r[2] for r in rows]
print(f"{engine}, medians of {len(rows)} rounds: no auth {med([r[0] for r in rows]):.0f} req/s, "
      f"token+audit {med([r[1] for r in rows]):.0f}, token without audit {med([r[2] for r in rows]):.0f}")
print(f"{engine}, audit on / off in the same round: median {med(audit):.2f} "
      f"(rounds: {' '.join(f'{x:.2f}' for x in audit)}); "
      f"token without audit / no auth: median {med([r[2] / r[0] for r in rows]):.2f}")
# CPU time per request drifts less with the machine's speed than throughput does (on PostgreSQL
# it is the server's alone: the database's work is not in it).
cpu = [r[4] / r[5] for r in rows if r[5] > 0]
if cpu:
    print(f"{engine}, server CPU per request: no auth {med([r[3] for r in rows]):.0f} us, "
          f"token+audit {med([r[4] for r in rows]):.0f} us, token without audit "
          f"{med([r[5] for r in rows]):.0f} us; with audit / without, in the same round: median "
          f"{med(cpu):.2f} (rounds: {' '.join(f'{x:.2f}' for x in cpu)})")
PY
}

echo "GET /fhir/$RESOURCE/{id}, $PATIENTS resources, wrk -t2 -c16 -d$DURATION on $(nproc) cores"

# SQLite
"$BIN" serve --insecure-no-auth --key-file "$WORK/key" --listen 127.0.0.1:18191 --database-url "sqlite://$WORK/bench.db" >/dev/null 2>&1 &
SQLITE_PID=$!
wait_up 127.0.0.1:18191
load 127.0.0.1:18191
curl -sf "http://127.0.0.1:18191$(cat "$WORK/first.txt")" > "$WORK/one.json"
# Each SQLite server gets its own copy of the loaded file: a commit by one process (another's
# audit batch) makes every other process drop its page cache, which no deployment does.
kill "$SQLITE_PID"; wait "$SQLITE_PID" 2>/dev/null || true
"$BIN" client add --client-id bench --public --scope 'system/*.rs' --database-url "sqlite://$WORK/bench.db" >/dev/null
cp "$WORK/bench.db" "$WORK/bench-token.db"
cp "$WORK/bench.db" "$WORK/bench-unaudited.db"
"$BIN" serve --insecure-no-auth --key-file "$WORK/key" --listen 127.0.0.1:18191 --database-url "sqlite://$WORK/bench.db" >/dev/null 2>&1 &
SQLITE_PID=$!
wait_up 127.0.0.1:18191
secured 127.0.0.1:18194 "sqlite://$WORK/bench-token.db" "$WORK/key" "" token
secured 127.0.0.1:18196 "sqlite://$WORK/bench-unaudited.db" "$WORK/key" --no-audit-for-measurement unaudited
side_by_side "SQLite" 127.0.0.1:18191 127.0.0.1:18194 127.0.0.1:18196
# shellcheck disable=SC2086
kill "$SQLITE_PID" $SECURE_PIDS; wait "$SQLITE_PID" $SECURE_PIDS 2>/dev/null || true
SECURE_PIDS=

# PostgreSQL
DB="expediente_bench_$$"
psql "$ADMIN_URL" -qc "CREATE DATABASE $DB"
trap 'kill $(jobs -p) 2>/dev/null || true; psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"; rm -rf "$WORK"' EXIT
"$BIN" serve --insecure-no-auth --key-file "$WORK/key2" --listen 127.0.0.1:18192 --database-url "${ADMIN_URL%/*}/$DB" >/dev/null 2>&1 &
PG_PID=$!
wait_up 127.0.0.1:18192
load 127.0.0.1:18192
psql "${ADMIN_URL%/*}/$DB" -qc "ANALYZE"
secured 127.0.0.1:18195 "${ADMIN_URL%/*}/$DB" "$WORK/key2" "" token
secured 127.0.0.1:18197 "${ADMIN_URL%/*}/$DB" "$WORK/key2" --no-audit-for-measurement unaudited
side_by_side "PostgreSQL" 127.0.0.1:18192 127.0.0.1:18195 127.0.0.1:18197
# shellcheck disable=SC2086
kill "$PG_PID" $SECURE_PIDS; wait "$PG_PID" $SECURE_PIDS 2>/dev/null || true

# Ceiling: the same bytes from a bare handler.
target/release/examples/ceiling 127.0.0.1:18193 "$WORK/one.json" &
CEIL_PID=$!
sleep 0.5
run_wrk "bare axum (same bytes)" 127.0.0.1:18193
kill "$CEIL_PID"
