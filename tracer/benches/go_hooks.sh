#!/bin/bash
# What the Go hooks ([runtimes] go: goroutine ids + net/http hand-off
# uprobes) cost a Go net/http server, side by side: rounds of wrk against the
# test middle (tracer/tests/fixtures/middles/middle.go), untraced, traced
# with `[runtimes] go = false`, traced with it on, back to back.
#   server: GET /hello on one Go process (the server-side hooks: 2 uprobe
#           hits per request);
#   chain:  GET /call/<port>/hello on a Go middle (pooled client) calling a
#           second Go process (4 + 2 hits per request).
# Usage (root, after `cargo build --release -p tracer`):
#   tracer/benches/go_hooks.sh [rounds] [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3} SECS=${2:-10} CONNS=${3:-16}
BIN=target/release/tracer
OUT=target/bench/go-hooks
mkdir -p "$OUT"
CGO_ENABLED=0 GO111MODULE=off go build -o "$OUT/middle" tracer/tests/fixtures/middles/middle.go
printf '[runtimes]\ngo = false\n' > "$OUT/nogo.toml"
printf '[runtimes]\ngo = true\n' > "$OUT/go.toml"
"$OUT/middle" -port 18081 & BACK=$!
"$OUT/middle" -port 18080 -pooled & MID=$!
trap 'kill $BACK $MID 2>/dev/null; [ -n "${AGENT:-}" ] && kill $AGENT 2>/dev/null; true' EXIT
sleep 0.5
rps() { wrk -t1 -c"$CONNS" -d"${SECS}s" "$1" | awk '/Requests\/sec/ {print $2}'; }
agent() {
  "$BIN" run --output none --api-addr 127.0.0.1:19400 -c "$OUT/$1.toml" 2> "$OUT/agent-$1.log" & AGENT=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:19400/readyz > /dev/null && break; sleep 0.1; done
  sleep 1 # the Go processes are probed (the /proc scan at start)
}
stop() { kill -TERM $AGENT; wait $AGENT || true; AGENT=; }
for url in http://127.0.0.1:18081/hello http://127.0.0.1:18080/call/18081/hello; do
  rps "$url" > /dev/null # warm-up
  for r in $(seq "$ROUNDS"); do
    u=$(rps "$url")
    agent nogo; n=$(rps "$url"); stop
    agent go; g=$(rps "$url")
    probed=$(curl -s http://127.0.0.1:19400/metrics | awk '/^tracer_runtime_go_total\{what="probed"\}/ {print $2}')
    stop
    echo "$url round $r: untraced $u req/s | traced, go off $n | traced, go on $g (probed ${probed:-0}) | go on / go off $(echo "$g / $n" | bc -l | cut -c1-5)"
  done
done
