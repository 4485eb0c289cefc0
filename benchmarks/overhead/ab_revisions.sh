#!/usr/bin/env bash
# Two checkouts of the gateway side by side in ONE run, in front of one upstream, measured
# interleaved (so machine drift hits both alike): did a change make the gateway slower?
#   benchmarks/overhead/ab_revisions.sh OLD_CHECKOUT NEW_CHECKOUT [ROUNDS]
# e.g. git worktree add /tmp/old b46a392 && benchmarks/overhead/ab_revisions.sh /tmp/old "$PWD"
# Prints req/s at 32 connections and p50 at 1 connection per round, the floor's
# (floor.py) beside them; needs wrk. OLD_POLICY / NEW_POLICY (paths in each checkout) set
# each side's policy: one checkout under two policies measures a feature's cost, e.g.
#   NEW_POLICY=benchmarks/overhead/policy_tracing.yaml ab_revisions.sh "$PWD" "$PWD"
# SHARED_FLOOR=../shared/bench/floor_passthrough.py adds that floor too (started with
# uvicorn, uvloop and httptools as its docstring says), measured in the same rounds.
set -euo pipefail
OLD=$(cd "$1" && pwd); NEW=$(cd "$2" && pwd); ROUNDS=${3:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-$HERE/../../.venv/bin/python}
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP_PORT=$(free_port); OLD_PORT=$(free_port); NEW_PORT=$(free_port); FLOOR_PORT=$(free_port)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
"$PY" "$HERE/upstream.py" --port "$UP_PORT" >/dev/null 2>&1 & PIDS+=($!)
# The floor beside them (benchmarks/overhead/floor.py), so each is also a ratio to it.
(cd "$HERE/../.." && exec "$PY" -m benchmarks.overhead.floor --port "$FLOOR_PORT" \
  --upstream "http://127.0.0.1:$UP_PORT" >/dev/null 2>&1) & PIDS+=($!)
SIDES=("floor:$FLOOR_PORT")
if [ -n "${SHARED_FLOOR:-}" ]; then
  SHARED_PORT=$(free_port)
  (cd "$(dirname "$SHARED_FLOOR")" && FLOOR_UPSTREAM="http://127.0.0.1:$UP_PORT" \
    exec "$PY" -m uvicorn "$(basename "$SHARED_FLOOR" .py):app" --host 127.0.0.1 \
    --port "$SHARED_PORT" --loop uvloop --http httptools --log-level warning \
    >/dev/null 2>&1) & PIDS+=($!)
  SIDES+=("shared:$SHARED_PORT")
fi
SIDES+=("old:$OLD_PORT" "new:$NEW_PORT")
POLICY=benchmarks/overhead/policy.yaml
for side in "$OLD:$OLD_PORT:${OLD_POLICY:-$POLICY}" "$NEW:$NEW_PORT:${NEW_POLICY:-$POLICY}"; do
  IFS=: read -r root port policy <<<"$side"
  (cd "$root" && UPSTREAM_URL="http://127.0.0.1:$UP_PORT/v1" PYTHONPATH="$root" \
    exec "$PY" -m router_proxy serve --config "$policy" \
    --host 127.0.0.1 --port "$port" >/dev/null 2>&1) & PIDS+=($!)
done
for side in "${SIDES[@]}"; do  # ready, then warm
  port=${side##*:}
  for _ in $(seq 60); do
    curl -s -o /dev/null -X POST -H 'content-type: application/json' \
      -d '{"model":"auto","messages":[{"role":"user","content":"hi"}]}' \
      "http://127.0.0.1:$port/v1/chat/completions" && break
    sleep 0.5
  done
  wrk -t2 -c32 -d2s -s "$HERE/post.lua" "http://127.0.0.1:$port" >/dev/null
done
for round in $(seq "$ROUNDS"); do
  for side in "${SIDES[@]}"; do
    name=${side%:*}; port=${side##*:}
    rps=$(wrk -t2 -c32 -d3s -s "$HERE/post.lua" "http://127.0.0.1:$port" | awk '/Requests\/sec/ {print $2}')
    p50=$(wrk -t1 -c1 -d3s --latency -s "$HERE/post.lua" "http://127.0.0.1:$port" | awk '$1=="50%" {print $2}')
    echo "round $round  $name  req/s@32 $rps  p50@1 $p50"
  done
done
