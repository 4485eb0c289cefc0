"""CPU per request through the engine's own walk (admit, route, dispatch to the mock,
accounting), in process, no HTTP: small enough a cost to see what a change to the walk
adds, which wrk on a busy machine cannot. Run it by path under each checkout:

    PYTHONPATH=/tmp/old python benchmarks/conversations/engine_cost.py POLICY
    PYTHONPATH=$PWD     python benchmarks/conversations/engine_cost.py POLICY

Every provider of POLICY is swapped for the mock; the prompt is one short coding
question. Prints the min and median over rounds of process time per request.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from router_proxy.config.load import load_config_text
from router_proxy.context import RequestContext
from router_proxy.engine.record import RequestRecord
from router_proxy.protocol import ChatCompletionRequest
from router_proxy.runtime import Runtime

BODY = {
    "model": "auto",
    "messages": [{"role": "user", "content": "Write a python function that reverses a list"}],
}
HEADERS = {"content-type": "application/json", "user-agent": "bench"}


async def measure(policy: str, rounds: int, per_round: int) -> list[float]:
    """``policy``: the policy's YAML text."""
    data = yaml.safe_load(policy)
    data["providers"] = {name: {"type": "mock"} for name in data["providers"]}
    data["server"] = {"log_requests": False}
    config, _ = load_config_text(yaml.safe_dump(data), env={"UPSTREAM_URL": "http://x/v1"})
    runtime = Runtime.build(config)
    await runtime.start()
    engine = runtime.engine

    async def one(i: int) -> None:
        record = RequestRecord(f"r{i}", "chat", "POST", "/v1/chat/completions")
        raw: dict[str, Any] = dict(BODY)
        request = ChatCompletionRequest.model_validate(raw)
        ctx = RequestContext(request, raw, record.request_id, HEADERS)
        await engine.admit(record, None)
        await engine.route(ctx, record)
        await engine.complete(ctx, record)
        engine.answered(record)

    try:
        for i in range(per_round):  # warm-up
            await one(i)
        samples = []
        for _ in range(rounds):
            began = time.process_time()
            for i in range(per_round):
                await one(i)
            samples.append((time.process_time() - began) / per_round * 1e6)
        return samples
    finally:
        await runtime.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", type=Path)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=5000)
    args = parser.parse_args()
    samples = asyncio.run(measure(args.policy.read_text(), args.rounds, args.per_round))
    print(f"min {min(samples):.2f} median {statistics.median(samples):.2f} us/request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
