"""Calls saved by coalescing: bursts of N identical requests (a new prompt each burst) sent
at once to a gateway whose upstream takes DELAY seconds per answer; upstream calls made
and the burst's wall time, with ``coalesce`` on (the default) and off.

    PYTHONPATH=. python -m benchmarks.cache.burst [--sizes 10 50 200] [--rounds 3]

A real loopback upstream (Starlette under uvicorn) and the gateway in this process, each
on its own port and thread; the client is httpx.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from collections import Counter
from statistics import median

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tqdm import tqdm

from router_proxy.config.load import load_config_text
from router_proxy.server.app import create_app
from tests.support.serving import ServerThread

DELAY = 0.5  # seconds the upstream takes per answer (a small model's latency)
POLICY = """\
providers:
  up: {{type: openai, base_url: "{url}/v1", api_key: sk-bench}}
models:
  slow: {{provider: up, cost: {{input_per_mtok: 2.5, output_per_mtok: 10}}}}
decisions:
  - name: faq
    when: true
    route: {{candidates: [slow]}}
    cache: {{mode: exact, coalesce: {coalesce}}}
"""


class SlowUpstream:
    def __init__(self) -> None:
        self.calls = 0
        app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])
        self.server = ServerThread(app)

    async def _chat(self, request: Request) -> JSONResponse:
        self.calls += 1
        body = json.loads(await request.body())
        await asyncio.sleep(DELAY)
        text = "echo: " + body["messages"][-1]["content"]
        message = {"role": "assistant", "content": text}
        return JSONResponse(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        )


async def burst(url: str, prompt: str, n: int) -> tuple[float, Counter[str]]:
    body = {"model": "auto", "messages": [{"role": "user", "content": prompt}]}
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        start = time.perf_counter()
        answers = await asyncio.gather(
            *(client.post("/v1/chat/completions", json=body) for _ in range(n))
        )
        seconds = time.perf_counter() - start
    assert all(a.status_code == 200 for a in answers), [a.status_code for a in answers]
    return seconds, Counter(a.headers["x-router-cache"] for a in answers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    counter = itertools.count()
    up = SlowUpstream()
    rows = []
    with up.server:
        for coalesce in ("true", "false"):
            config, _ = load_config_text(
                POLICY.format(url=up.server.base_url, coalesce=coalesce), env={}
            )
            with ServerThread(create_app(config)) as gateway:
                for n in tqdm(args.sizes, desc=f"coalesce: {coalesce}", file=sys.stderr):
                    calls, seconds, outcomes = [], [], Counter[str]()
                    for _ in range(args.rounds):
                        before = up.calls
                        took, seen = asyncio.run(
                            burst(gateway.base_url, f"burst prompt #{next(counter)}", n)
                        )
                        calls.append(up.calls - before)
                        seconds.append(took)
                        outcomes += seen
                    rows.append((coalesce, n, median(calls), median(seconds), outcomes))
    print(f"upstream answers after {DELAY} s; median of {args.rounds} bursts per row")
    print("| coalesce | burst | upstream calls | calls saved | burst wall time | outcomes |")
    print("|---|---:|---:|---:|---:|---|")
    for coalesce, n, calls_made, took, outcomes in rows:
        seen = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        print(f"| {coalesce} | {n} | {calls_made:g} | {n - calls_made:g} | {took:.2f} s | {seen} |")


if __name__ == "__main__":
    main()
