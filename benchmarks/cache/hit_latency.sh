#!/usr/bin/env bash
# Latency of a cache hit against a miss and an uncached request, on one gateway in front of
# the overhead benchmark's fake upstream (answers at once: a miss's extra cost here is the
# gateway's own dispatch; a real model adds its seconds). p50/p99 at 1 connection, req/s at
# 32, per case (bodies.lua says what each sends), ROUNDS rounds interleaved.
#   benchmarks/cache/hit_latency.sh [ROUNDS]
set -euo pipefail
ROUNDS=${1:-3}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP_PORT=$(free_port); GW_PORT=$(free_port)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
"$PY" "$ROOT/benchmarks/overhead/upstream.py" --port "$UP_PORT" >/dev/null 2>&1 & PIDS+=($!)
(cd "$ROOT" && UPSTREAM_URL="http://127.0.0.1:$UP_PORT/v1" PYTHONPATH="$ROOT" \
  exec "$PY" -m router_proxy serve --config benchmarks/cache/policy.yaml \
  --host 127.0.0.1 --port "$GW_PORT" >/dev/null 2>&1) & PIDS+=($!)
URL="http://127.0.0.1:$GW_PORT"
for _ in $(seq 60); do curl -sf -o /dev/null "$URL/ready" && break; sleep 0.5; done
for case in plain hit miss semantic; do  # warm (and the first hit's store)
  CASE=$case wrk -t1 -c4 -d2s -s "$HERE/bodies.lua" "$URL" >/dev/null
done
for round in $(seq "$ROUNDS"); do
  for case in plain hit miss semantic; do
    rps=$(CASE=$case wrk -t2 -c32 -d3s -s "$HERE/bodies.lua" "$URL" | awk '/Requests\/sec/ {print $2}')
    lat=$(CASE=$case wrk -t1 -c1 -d3s --latency -s "$HERE/bodies.lua" "$URL" \
      | awk '$1=="50%" {p50=$2} $1=="99%" {p99=$2} END {print "p50@1 " p50 "  p99@1 " p99}')
    echo "round $round  $(printf %-8s "$case")  req/s@32 $rps  $lat"
  done
done
echo "cache outcomes:"
curl -s "$URL/metrics" | grep -E '^router_cache_(hits|misses|bypass)_total' || true
