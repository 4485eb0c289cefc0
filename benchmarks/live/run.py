"""Learning routing from live traffic: RouterBench's train split replayed through the
gateway as live traffic, shadow sampling at 30%, records -> CASCAL retrained on them ->
judged on dev.jsonl against selectors trained offline on the true scores; and the
latency of served requests with and without shadow sampling, in the same run.

1. Offline, as a team would before going live: kNN and CASCAL trained on train.jsonl
   (`router-proxy train --data`; kNN reads the true scores). kNN is the policy serving
   the replay (`algorithm: knn`, all 11 models as candidates).
2. A fake upstream (upstream.py, a real loopback HTTP server) answers each model's call
   with the dataset's recorded response and cost, after 20 ms.
3. Phase "off": the gateway without shadow sampling; the first --latency-requests prompts
   at --rate requests/s (open loop), latency of each answer as the client sees it.
4. Phase "on": the same policy with `shadow: {share: 0.3}` on the decision; every train
   prompt at the same rate, in a seeded random order (train.jsonl is sorted by task; live
   traffic mixes them). The gateway writes a shadow record per shadow call; the client
   writes each served request's record (prompt, answer, model, cost: the fields the
   records helper's served record carries; a stand-in until that lands).
5. The shadowed requests, in arrival order: the first 80% train CASCAL
   (`router-proxy train --algorithm cascal --records`), the last 20% are the held-out live
   slice (`router-proxy eval --judge consensus`, the judge checked against train's true
   labels; `router-proxy promote` on it).
6. `router-proxy eval` on dev.jsonl with its true scores: every router's quality at
   <= $0.50 and <= $2.50 per 1k, AIQ.

    .venv/bin/python -m benchmarks.live.run [--data /work/shared/data/routerbench]

Writes results/live.json (and the records, wide rows, artifacts under results/work/).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson
from tqdm import tqdm

from router_proxy.cli import main as cli
from router_proxy.training.aiq import hull_at
from router_proxy.training.dataset import read_rows
from router_proxy.training.evaluate import evaluate
from router_proxy.training.records import join_records, read_records, write_rows

HERE = Path(__file__).resolve().parent
BUDGETS = (0.5, 2.5)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def process(*argv: str) -> Iterator[int]:
    """A child process that prints ``port N`` once it listens; yields N."""
    child = subprocess.Popen([sys.executable, "-m", *argv], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        match = re.match(r"port (\d+)", line)
        if not match:
            raise RuntimeError(f"{argv[0]} did not start: {line!r}")
        yield int(match.group(1))
    finally:
        child.terminate()  # SIGTERM: the gateway drains, cancels shadow calls, exits
        child.wait(timeout=60)


def policy(models: list[str], upstream: int, knn: Path, share: float | None) -> str:
    lines = [
        "server: {log_requests: false, shutdown_grace: 5}",
        f"providers: {{bench: {{type: openai, base_url: 'http://127.0.0.1:{upstream}/v1', "
        "api_key: x}}",
        "models:",
    ]
    # $1 per 1M completion tokens: the upstream reports the recorded cost in micro-dollars.
    lines += [f"  '{m}': {{provider: bench, cost: {{output_per_mtok: 1.0}}}}" for m in models]
    shadow = ""
    if share is not None:
        shadow = f", shadow: {{share: {share}, budget_usd_per_day: 50, max_concurrent: 128}}"
    lines += [
        "decisions:",
        "  - {name: default, when: true, route: {candidates: ["
        + ", ".join(f"'{m}'" for m in models)
        + f"], algorithm: knn, params: {{artifact: '{knn}'}}}}{shadow}}}",
    ]
    return "\n".join(lines) + "\n"


async def replay(
    port: int, rows: list[dict[str, Any]], rate: float, label: str
) -> list[dict[str, Any]]:
    """Each row's prompt at ``rate`` per second (open loop); per request: its index, id,
    answering model, answer and latency as the client saw it."""
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    results: list[dict[str, Any]] = [{} for _ in rows]
    bar = tqdm(total=len(rows), desc=label, unit="req", file=sys.stderr)
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int, row: dict[str, Any], at: float) -> None:
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            body = {"model": "auto", "messages": [{"role": "user", "content": row["prompt"]}]}
            started = time.perf_counter()
            async with session.post(url, json=body) as response:
                data = await response.json()
            latency = time.perf_counter() - started
            content = data["choices"][0]["message"]["content"] if response.status == 200 else None
            results[i] = {
                "index": i,
                "status": response.status,
                "request_id": response.headers.get("x-router-request-id"),
                "model": response.headers.get("x-router-model"),
                "answer": content,
                "latency_ms": latency * 1000,
                "time": time.time(),
            }
            bar.update()

        start = time.perf_counter() + 0.2
        await asyncio.gather(*(one(i, r, start + i / rate) for i, r in enumerate(rows)))
    bar.close()
    return results


async def shadow_metrics(port: int) -> dict[str, float]:
    """The shadow counters from /metrics, summed over labels, once no call is in flight."""
    totals: dict[str, float] = {}
    async with aiohttp.ClientSession() as session:
        for _ in range(100):  # until the counters stop moving (calls still finishing)
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                text = await response.text()
            now: dict[str, float] = {}
            for line in text.splitlines():
                match = re.match(r"(router_shadow_\w+?)(?:_total)?(\{.*\})? ([0-9.e+-]+)$", line)
                if match and not line.startswith("#") and "_created" not in match.group(1):
                    key = match.group(1)
                    if key == "router_shadow_dropped":
                        key += "_" + re.search(r'reason="(\w+)"', line).group(1)  # type: ignore[union-attr]
                    now[key] = now.get(key, 0.0) + float(match.group(3))
            if now and now == totals:
                break
            totals = now
            await asyncio.sleep(0.5)
    return totals


def served_record(row: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    model = result["model"]
    return {
        "v": 1,
        "kind": "served",
        "request_id": result["request_id"],
        "time": result["time"],
        "surface": "chat",
        "decision": "default",
        "signals": {},
        "candidates": [],
        "model": model,
        "attempts": [[model, None]],
        "usage": None,
        "cost_usd": row["costs"].get(model),
        "latency_ms": result["latency_ms"],
        "status": result["status"],
        "trace_id": None,
        "prompt": row["prompt"],
        "answer": result["answer"],
    }


def percentiles(latencies: list[float]) -> dict[str, float]:
    values = np.array(latencies)
    return {
        "n": len(latencies),
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
    }


def quiet_cli(*argv: str) -> str:
    """A router-proxy command, its stdout returned (and echoed), failing loudly."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli(list(argv))
    text = out.getvalue()
    say(f"$ router-proxy {' '.join(argv)}\n{text}")
    if code not in (0, 3):
        raise SystemExit(f"router-proxy {argv[0]} failed ({code})")
    return text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/routerbench"))
    parser.add_argument("--share", type=float, default=0.3)
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second")
    parser.add_argument("--latency-requests", type=int, default=600)
    parser.add_argument("--limit", type=int, help="replay only this many train rows")
    parser.add_argument("--seed", type=int, default=0, help="the replay's order")
    parser.add_argument("--work", type=Path, default=HERE / "results" / "work")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "live.json")
    args = parser.parse_args()
    began = time.perf_counter()
    train, dev = args.data / "train.jsonl", args.data / "dev.jsonl"
    rows = [orjson.loads(line) for line in train.read_bytes().splitlines()]
    # Live traffic mixes its tasks; train.jsonl is sorted by task (arc, winogrande, mbpp).
    random.Random(args.seed).shuffle(rows)
    rows = rows[: args.limit]
    models = sorted(rows[0]["responses"])
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    (work / "records").mkdir(parents=True)
    art = work / "artifacts"

    say("1. offline selectors on train.jsonl (kNN on the true scores; CASCAL label-free)")
    quiet_cli(
        "train",
        "--algorithm",
        "knn",
        "--data",
        str(train),
        "--out",
        str(art / "offline-knn"),
        "--quiet",
    )
    quiet_cli(
        "train",
        "--algorithm",
        "cascal",
        "--data",
        str(train),
        "--out",
        str(art / "offline-cascal"),
        "--quiet",
    )

    shadow_file = work / "records" / "shadow.jsonl"
    latency: dict[str, Any] = {}
    with process("benchmarks.live.upstream", "--data", str(train), "--data", str(dev)) as up:
        for phase, share in (("off", None), ("on", args.share)):
            config = work / f"policy-{phase}.yaml"
            config.write_text(policy(models, up, art / "offline-knn", share))
            records = work / f"gateway-{phase}.jsonl"
            with process(
                "benchmarks.live.gateway", "--config", str(config), "--records", str(records)
            ) as port:
                subset = rows[: args.latency_requests] if phase == "off" else rows
                say(f"2. shadow {phase}: {len(subset)} requests at {args.rate:g}/s")
                results = asyncio.run(replay(port, subset, args.rate, f"shadow {phase}"))
                if phase == "on":
                    counters = asyncio.run(shadow_metrics(port))
            if phase == "on":
                shutil.move(records, shadow_file)
            failed = sum(r["status"] != 200 for r in results)
            if failed:
                raise SystemExit(f"{failed} requests failed in phase {phase}")
            latency[phase] = results

    shadowed = {r["request_id"] for r in read_records([shadow_file])}
    on = latency["on"]
    first = [r["latency_ms"] for r in on[: args.latency_requests]]
    figures: dict[str, Any] = {
        "latency": {
            "shadow_off": percentiles([r["latency_ms"] for r in latency["off"]]),
            "shadow_on_same_prompts": percentiles(first),
            "shadow_on_all": percentiles([r["latency_ms"] for r in on]),
            "shadow_on_sampled": percentiles(
                [r["latency_ms"] for r in on if r["request_id"] in shadowed]
            ),
            "shadow_on_not_sampled": percentiles(
                [r["latency_ms"] for r in on if r["request_id"] not in shadowed]
            ),
        },
        "shadow_metrics": counters,
    }

    say("3. records -> wide rows: the first 80% of shadowed requests train, the rest held out")
    order = [r for r in on if r["request_id"] in shadowed]
    cut = int(len(order) * 0.8)
    held_ids = {r["request_id"] for r in order[cut:]}
    by_index = {r["request_id"]: rows[r["index"]] for r in on}
    for part, keep in (
        ("train", lambda rid: rid not in held_ids),
        ("held", lambda rid: rid in held_ids),
    ):
        folder = work / "records" / part
        folder.mkdir()
        with (folder / "served.jsonl").open("wb") as fh:
            for r in on:
                if keep(r["request_id"]):
                    fh.write(orjson.dumps(served_record(by_index[r["request_id"]], r)) + b"\n")
        with (folder / "shadow.jsonl").open("wb") as fh:
            for rec in read_records([shadow_file]):
                if keep(rec["request_id"]):
                    fh.write(orjson.dumps(rec) + b"\n")
    held_rows, _ = join_records(read_records([work / "records" / "held"]))
    write_rows(held_rows, work / "live-held.jsonl")

    say("4. retrain CASCAL on the recorded traffic")
    quiet_cli(
        "train",
        "--algorithm",
        "cascal",
        "--records",
        str(work / "records" / "train"),
        "--out",
        str(art / "live-cascal"),
        "--wide-out",
        str(work / "live-train.jsonl"),
        "--quiet",
    )
    live_rows = len(read_rows(work / "live-train.jsonl"))

    say("5. the held-out live slice, judged by consensus (judge checked on train's labels)")
    routers = [str(art / n) for n in ("offline-knn", "live-cascal", "offline-cascal")]
    consensus_eval = evaluate(
        routers, work / "live-held.jsonl", progress=False, judge="consensus", labels=[train]
    )
    gate = quiet_cli(
        "promote",
        "--candidate",
        str(art / "live-cascal"),
        "--serving",
        str(art / "offline-knn"),
        "--data",
        str(work / "live-held.jsonl"),
        "--budget-per-1k",
        "2.5",
        "--margin",
        "0.01",
        "--labels",
        str(train),
        "--policy",
        str(work / "policy-on.yaml"),
        "--decision",
        "default",
        "--canary",
        "0.1",
        "--quiet",
    )

    say("6. dev.jsonl with its true scores")
    dev_eval = evaluate(routers, dev, progress=False)
    figures |= {
        "rows": {
            "train_requests": len(rows),
            "shadowed": len(shadowed),
            "live_train_rows": live_rows,
            "live_held_rows": len(held_rows),
        },
        "dev": summary(dev_eval),
        "live_held_consensus": summary(consensus_eval)
        | {
            "judge_agreement_with_labels": consensus_eval.judge_agreement,
            "labelled_pairs": consensus_eval.judge_labelled,
        },
        "promote": gate.splitlines()[:2],
        "seconds": round(time.perf_counter() - began, 1),
    }
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    say(f"wrote {out} in {figures['seconds']} s")


def summary(result: Any) -> dict[str, Any]:
    routers = {}
    for r in result.routers:
        points = [p.point for p in r.points]
        entry: dict[str, Any] = {"aiq": round(r.aiq, 4)}
        for budget in BUDGETS:
            within = [q for c, q in points if c <= budget]
            entry[f"best_at_{budget}"] = round(max(within), 4) if within else None
            entry[f"hull_at_{budget}"] = round(hull_at(points, budget, float("nan")), 4)
        routers[r.name] = entry
    base = result.baselines
    return {
        "rows": result.rows,
        "routers": routers,
        "best_single": {
            "model": base.best_single,
            "cost_per_1k": base.single[base.best_single][0],
            "quality": base.single[base.best_single][1],
        },
        "single": {
            m: {"cost_per_1k": round(c, 4), "quality": round(q, 4)}
            for m, (c, q) in base.single.items()
        },
        "zero_router_aiq": round(result.zero_router_aiq, 4),
    }


if __name__ == "__main__":
    main()
