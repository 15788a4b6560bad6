#!/usr/bin/env bash
# The paths clients use, side by side: `bash benches/compare.sh [PEER_BASE_URL]`.
#
# The 22 Synthea bundles of tests/data/synthea-bundles, with only the seven hosted resource types
# (examples/compare_bench.rs prepare), are loaded into a fresh expediente on SQLite and on
# PostgreSQL, as deployed: a backend client's access token (system/*.cruds) on every request and
# every access audited. On each engine:
#   - `expediente import` of the same bundles into a fresh database (its own resources/s);
#   - POST /fhir of each bundle over HTTP, one client posting one bundle at a time, into a fresh
#     database, BENCH_RUNS times (default 3); on PostgreSQL also with 4 clients posting at once
#     (the two batch bundles go first, one request each; the transaction bundles' own rate,
#     after them, is printed too);
#   - resident memory of the server: idle after start, and after the load, reads and searches;
#   - GET Patient/{id} and GET Observation/{id}, wrk with 16 connections for BENCH_DURATION
#     (default 5s), next to the bare axum handler answering the same bytes (the ceiling);
#   - five searches about the patient with the most observations, one request at a time over one
#     kept connection with TCP_NODELAY, 200 times after 20 unmeasured (second pass printed).
# With PEER_BASE_URL (a FHIR R4 base, e.g. http://127.0.0.1:8090/fhir, holding no data yet) the
# same bundles are loaded into it and the same reads and searches are run against it
# (PEER_TOKEN, if set, is sent as its bearer token).
# Prints one table. Needs wrk and PostgreSQL at $BENCH_POSTGRES_URL (default 127.0.0.1:5432).
# Not a test: figures go to docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
PEER="${1:-}"
ADMIN_URL="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
RUNS="${BENCH_RUNS:-3}"
DURATION="${BENCH_DURATION:-5s}"
WORK="$(mktemp -d)"
export EXPEDIENTE_AUDIT_JOURNAL="$WORK/audit-journal"
# The databases made, one a line (fresh runs in a subshell: an array would not see them).
DBS_MADE="$WORK/databases"
cleanup() {
    kill $(jobs -p) 2>/dev/null || true
    wait 2>/dev/null || true
    if [ -f "$DBS_MADE" ]; then
        while read -r db; do
            psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
        done < "$DBS_MADE"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${EXPEDIENTE_BIN:-}" ]; then
    cargo build --release --quiet --bin expediente --example compare_bench --example ceiling
fi
BIN="${EXPEDIENTE_BIN:-target/release/expediente}"
BENCH="${COMPARE_BENCH_BIN:-target/release/examples/compare_bench}"
CEILING="${CEILING_BIN:-target/release/examples/ceiling}"
"$BENCH" prepare --data tests/data/synthea-bundles --out "$WORK/bundles"
: > "$WORK/figures"
figure() { echo "$1 $2" >> "$WORK/figures"; }

source benches/lib.sh
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

# fresh NAME ENGINE: a new empty database's URL (SQLite file or PostgreSQL database).
fresh() {
    if [ "$2" = sqlite ]; then
        echo "sqlite://$WORK/$1.db"
    else
        local db="expediente_compare_$$_$1"
        psql "$ADMIN_URL" -qc "CREATE DATABASE $db" >&2
        echo "$db" >> "$DBS_MADE"
        echo "${ADMIN_URL%/*}/$db"
    fi
}

# serve URL: starts a secured server on the database at URL; sets ADDR, PID and TOKEN.
serve() {
    ADDR="127.0.0.1:$(free_port)"
    "$BIN" client add --client-id bench --public --scope 'system/*.cruds' --database-url "$1" >/dev/null 2>&1 || true
    "$BIN" serve --key-file "$WORK/key" --listen "$ADDR" --database-url "$1" > "$WORK/serve.log" 2>&1 &
    PID=$!
    wait_up "$ADDR"
    TOKEN=$("$BIN" token --client-id bench --scope 'system/*.cruds' --audience "http://$ADDR/fhir" \
        --key-file "$WORK/key" --database-url "$1")
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; }

rate() { sed -n 's/.*(\([0-9]*\) resources\/s).*/\1/p'; }

reads() {
    local label="$1" addr="$2" script="$3"
    wrk -t2 -c16 -d"$DURATION" --latency -s "$script" "http://$addr" > "$WORK/wrk.txt"
    sleep 1.5
    grep -E "Non-2xx|Socket errors" "$WORK/wrk.txt" >&2 || true
    figure "$label.rps" "$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$WORK/wrk.txt")"
    figure "$label.p99" "$(awk '$1=="99%" {print $2}' "$WORK/wrk.txt")"
}

searches() {
    local label="$1" base="$2" token="$3"
    "$BENCH" search --base "$base" --token "$token" --repeat 20 --paths "$WORK/$label-" "$WORK/bundles" >/dev/null
    "$BENCH" search --base "$base" --token "$token" --repeat 200 "$WORK/bundles" | tee "$WORK/search.txt"
    awk -v l="$label" '/median/ {n++; print l ".search." n " " $3 "/" $6 " " $1}' "$WORK/search.txt" >> "$WORK/figures"
}

engine() {
    local name="$1" kind="$2" url i
    echo "=== $name ==="
    for i in $(seq "$RUNS"); do
        url=$(fresh "import$i" "$kind")
        "$BIN" import --no-progress --skip-unsupported --database-url "$url" "$WORK/bundles" | tee "$WORK/import.txt"
        figure "$name.import" "$(rate < "$WORK/import.txt")"
    done
    local clients=(1)
    [ "$kind" = pg ] && clients=(1 4)
    for c in "${clients[@]}"; do
        for i in $(seq "$RUNS"); do
            url=$(fresh "http${c}x$i" "$kind")
            serve "$url"
            [ "$c" = 1 ] && [ "$i" = 1 ] && figure "$name.rss_idle" "$(rss_mb "$PID")"
            "$BENCH" load --base "http://$ADDR/fhir" --token "$TOKEN" --clients "$c" "$WORK/bundles" | tee "$WORK/load.txt"
            figure "$name.http$c" "$(head -1 "$WORK/load.txt" | rate)"
            figure "$name.tx$c" "$(sed -n 's/^transactions: .*(\([0-9]*\) resources\/s).*/\1/p' "$WORK/load.txt")"
            if [ "$c" = 1 ] && [ "$i" = "$RUNS" ]; then
                searches "$name" "http://$ADDR/fhir" "$TOKEN"
                reads "$name.Patient" "$ADDR" "$WORK/$name-Patient.lua"
                reads "$name.Observation" "$ADDR" "$WORK/$name-Observation.lua"
                figure "$name.rss_loaded" "$(rss_mb "$PID")"
                curl -sf -H "Authorization: Bearer $TOKEN" "http://$ADDR$(sed -n 's/^paths = {"\([^"]*\)".*/\1/p' "$WORK/$name-Patient.lua")" > "$WORK/one.json"
            fi
            stop
        done
    done
}

engine SQLite sqlite
engine PostgreSQL pg

if [ -n "$PEER" ]; then
    echo "=== peer at $PEER ==="
    "$BENCH" load --base "$PEER" --token "${PEER_TOKEN:-}" "$WORK/bundles" | tee "$WORK/load.txt"
    figure "peer.http1" "$(head -1 "$WORK/load.txt" | rate)"
    figure "peer.tx1" "$(sed -n 's/^transactions: .*(\([0-9]*\) resources\/s).*/\1/p' "$WORK/load.txt")"
    searches peer "$PEER" "${PEER_TOKEN:-}"
    hostport="${PEER#http://}"
    reads peer.Patient "${hostport%%/*}" "$WORK/peer-Patient.lua"
    reads peer.Observation "${hostport%%/*}" "$WORK/peer-Observation.lua"
fi

CEIL_ADDR="127.0.0.1:$(free_port)"
"$CEILING" "$CEIL_ADDR" "$WORK/one.json" &
sleep 0.5
sed 's/^wrk.headers.*//' "$WORK/SQLite-Patient.lua" > "$WORK/ceiling.lua"
reads ceiling "$CEIL_ADDR" "$WORK/ceiling.lua"

python3 - "$WORK/figures" "$PEER" <<'PY'
import statistics, sys
rows = [l.split(None, 1) for l in open(sys.argv[1]) if l.strip()]
peer = bool(sys.argv[2])
f = {}
for k, v in rows:
    f.setdefault(k, []).append(v.strip())
def num(k):
    xs = [float(x) for x in f.get(k, []) if x.replace('.', '', 1).isdigit()]
    return xs
def med(k):
    xs = num(k)
    return f"{statistics.median(xs):,.0f}" if xs else "—"
def span(k):
    xs = num(k)
    if not xs:
        return "—"
    return f"{statistics.median(xs):,.0f} ({min(xs):,.0f}–{max(xs):,.0f})" if len(xs) > 1 else f"{xs[0]:,.0f}"
def share(k, of):
    a, b = num(k), num(of)
    return f"{statistics.median(a) / statistics.median(b):.0%}" if a and b else "—"
def one(k):
    return f.get(k, ["—"])[0].split()[0]
engines = ["SQLite", "PostgreSQL"] + (["peer"] if peer else [])
head = ["expediente SQLite", "expediente PostgreSQL"] + (["peer"] if peer else [])
print()
print("| | " + " | ".join(head) + " |")
print("|---|" + "---:|" * len(head))
def row(label, cells):
    print(f"| {label} | " + " | ".join(cells) + " |")
row("`expediente import`, resources/s", [span(f"{e}.import") if e != "peer" else "" for e in engines])
row("bundles over HTTP, 1 client, resources/s", [span(f"{e}.http1") for e in engines])
row("  share of the import rate", [share(f"{e}.http1", f"{e}.import") if e != "peer" else "" for e in engines])
row("bundles over HTTP, 4 clients, resources/s", [span(f"{e}.http4") if e == "PostgreSQL" else "" for e in engines])
row("  4 clients / 1 client", [(f"{statistics.median(num('PostgreSQL.http4')) / statistics.median(num('PostgreSQL.http1')):.2f}×" if num('PostgreSQL.http4') else "—") if e == "PostgreSQL" else "" for e in engines])
row("transaction bundles alone (after the batches), 1 client", [span(f"{e}.tx1") for e in engines])
row("transaction bundles alone, 4 clients", [span(f"{e}.tx4") if e == "PostgreSQL" else "" for e in engines])
row("  4 clients / 1 client", [(f"{statistics.median(num('PostgreSQL.tx4')) / statistics.median(num('PostgreSQL.tx1')):.2f}×" if num('PostgreSQL.tx4') else "—") if e == "PostgreSQL" else "" for e in engines])
for rt in ["Patient", "Observation"]:
    row(f"GET {rt}/{{id}}, 16 connections, req/s", [med(f"{e}.{rt}.rps") for e in engines])
    row("  share of the ceiling / p99", [f"{share(f'{e}.{rt}.rps', 'ceiling.rps')} / {one(f'{e}.{rt}.p99')}" for e in engines])
names = {}
for k, vs in f.items():
    if ".search." in k:
        for v in vs:
            names[k.split(".")[-1]] = v.split()[1]
for i in sorted(names):
    row(f"{names[i]}, median / p99 ms", [one(f"{e}.search.{i}") for e in engines])
row("resident memory idle after start, MB", [one(f"{e}.rss_idle") if e != "peer" else "—" for e in engines])
row("resident memory after load, reads, searches, MB", [one(f"{e}.rss_loaded") if e != "peer" else "—" for e in engines])
print(f"\nceiling (bare axum handler, same bytes): {med('ceiling.rps')} req/s")
PY
