# Helpers the benchmark scripts share (sourced, not run).

# A free TCP port on the loopback.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_up ADDR [LOG]: waits (up to 30 s) until the server at ADDR answers /health; else says so,
# with the end of its LOG when given, and fails.
wait_up() {
    for _ in $(seq 300); do
        curl -sf "http://$1/health" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "the server at $1 did not start" >&2
    if [ -n "${2:-}" ]; then
        echo "its log ($2):" >&2
        tail -n 20 "$2" >&2
    fi
    return 1
}
