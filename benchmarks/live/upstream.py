"""A fake OpenAI-compatible upstream that answers with RouterBench's recorded responses:
``POST /v1/chat/completions`` looks the last user message up among the rows of the data
files and answers with the requested model's recorded response, after ``--delay`` seconds
(a network call's time). Its usage makes the gateway's price table give the recorded cost:
the models are priced at $1 per 1M completion tokens (run.py's policy), so a call that
cost $c reports round(c * 1e6) completion tokens.

    python -m benchmarks.live.upstream --data train.jsonl --data dev.jsonl --port 0

Prints ``port N`` on stdout once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time

import orjson
from aiohttp import web


def load(paths: list[str]) -> dict[str, dict[str, tuple[str, float]]]:
    """prompt -> model -> (response, US$)."""
    table: dict[str, dict[str, tuple[str, float]]] = {}
    for path in paths:
        with open(path, "rb") as fh:
            for line in fh:
                row = orjson.loads(line)
                costs = row.get("costs", {})
                table[row["prompt"]] = {
                    m: (text, float(costs.get(m, 0.0))) for m, text in row["responses"].items()
                }
    return table


def app(table: dict[str, dict[str, tuple[str, float]]], delay: float) -> web.Application:
    async def complete(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        model = body["model"]
        user = [m for m in body["messages"] if m["role"] == "user"]
        content = user[-1]["content"] if user else ""
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content)
        recorded = table.get(content, {}).get(model)
        if recorded is None:
            error = {"message": f"no recorded answer of {model} for this prompt"}
            return web.json_response({"error": error}, status=404)
        text, cost = recorded
        if delay:
            await asyncio.sleep(delay)
        answer = {
            "id": "chatcmpl-live",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 0,
                "completion_tokens": round(cost * 1e6),
                "total_tokens": round(cost * 1e6),
            },
        }
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    application = web.Application(client_max_size=16 * 1024 * 1024)
    application.router.add_post("/v1/chat/completions", complete)
    return application


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", action="append", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.02)
    args = parser.parse_args()
    sock = socket.socket()
    sock.bind(("127.0.0.1", args.port))
    print(f"port {sock.getsockname()[1]}", flush=True)
    web.run_app(app(load(args.data), args.delay), sock=sock, print=None, access_log=None)


if __name__ == "__main__":
    main()
