"""Learning routing from live traffic: RouterBench's train split replayed through the
gateway as live traffic, shadow sampling at 30%, the gateway's own records -> CASCAL
retrained on them -> judged on dev.jsonl against selectors trained offline on the true
scores; and the latency of served requests without records, with records, and with
records and shadow sampling, in the same run.

1. Offline, as a team would before going live: kNN and CASCAL trained on train.jsonl
   (`router-proxy train --data`; kNN reads the true scores). kNN is the policy serving
   the replay (`algorithm: knn`, all 11 models as candidates).
2. A fake upstream (upstream.py, a real loopback HTTP server) answers each model's call
   with the dataset's recorded response and cost, after 20 ms.
3. The gateway is `router-proxy serve --config POLICY`, its own process, one per phase,
   stopped with SIGTERM (which flushes and closes its records sink). Phases, each at
   --rate requests/s (open loop), latency of each answer as the client sees it:
   "off" (no `records:`, no `shadow:`; the first --latency-requests prompts), "records"
   (`records:` with content, every request recorded; the same prompts), "on" (`records:`
   and `shadow: {share: 0.3}` on the decision; every train prompt), "off_again" (the
   first phase once more: how far the shared machine moves latency within one run).
   Prompts go in a seeded random order (train.jsonl is sorted by task; live traffic
   mixes them).
4. The "on" gateway's records file is checked complete after its shutdown (a served
   record with prompt and answer for every request, a shadow record for every shadow
   call its metrics counted, none dropped). The shadowed requests, in the order of their
   served records' times: the first 80% train CASCAL (`router-proxy train --algorithm
   cascal --records`, on the gateway's record lines for those requests and every
   unshadowed one), the last 20% are the held-out live slice (`router-proxy eval --judge
   consensus`, the judge checked against train's true labels; `router-proxy promote`).
   The control: CASCAL trained (`--data`) on train.jsonl's own rows for the same
   prompts (answers, costs and task; no scores). The records' answers and costs are
   compared with the dataset's, counted; the two curves differ only by what records
   lack (`task`), so the control says what is CASCAL on that sample of prompts and
   what is the records' path.
5. `router-proxy eval` on dev.jsonl with its true scores: every router's quality at
   <= $0.50 and <= $2.50 per 1k, AIQ.

    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.live.run [--data /work/shared/data/routerbench]
        [--seed 0] [--rate 40] [--share 0.3] [--sample-rate 1.0] [--latency-requests 600]

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
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
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
from router_proxy.training.records import join_records, read_records, record_files, write_rows

HERE = Path(__file__).resolve().parent
BUDGETS = (0.5, 2.5)
# phase -> (records on, shadow on, every prompt rather than the first --latency-requests)
PHASES = {
    "off": (False, False, False),
    "records": (True, False, False),
    "on": (True, True, True),
    "off_again": (False, False, False),
}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def upstream_process(*argv: str) -> Iterator[int]:
    """The fake upstream, which prints ``port N`` once it listens; yields N."""
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.live.upstream", *argv], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        match = re.match(r"port (\d+)", line)
        if not match:
            raise RuntimeError(f"the upstream did not start: {line!r}")
        yield int(match.group(1))
    finally:
        child.terminate()
        child.wait(timeout=60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def gateway(config: Path, log: Path) -> Iterator[int]:
    """``router-proxy serve --config CONFIG`` in its own process (this checkout's code);
    yields its port once /ready answers. Stopped with SIGTERM, as an orchestrator stops
    it: it drains, cancels shadow calls, flushes and closes the records sink, exits 0."""
    port = free_port()
    argv = ["serve", "--config", str(config), "--port", str(port), "--log-level", "warning"]
    with log.open("wb") as err:
        child = subprocess.Popen([sys.executable, "-m", "router_proxy", *argv], stderr=err)
        try:
            deadline = time.monotonic() + 120
            while not ready(port):
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"router-proxy serve did not start: see {log}")
                time.sleep(0.2)
            yield port
        finally:
            child.send_signal(signal.SIGTERM)
            code = child.wait(timeout=120)
    if code != 0:
        raise RuntimeError(f"router-proxy serve exited {code} after SIGTERM: see {log}")


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def policy(
    models: list[str],
    upstream: int,
    knn: Path,
    records: Path | None,
    share: float | None,
    sample_rate: float,
) -> str:
    lines = [
        "server: {log_requests: false, shutdown_grace: 5, watch_config: false}",
        f"providers: {{bench: {{type: openai, base_url: 'http://127.0.0.1:{upstream}/v1', "
        "api_key: x}}",
        "models:",
    ]
    # $1 per 1M completion tokens: the upstream reports the recorded cost in micro-dollars.
    lines += [f"  '{m}': {{provider: bench, cost: {{output_per_mtok: 1.0}}}}" for m in models]
    if records is not None:
        lines.append(
            f"records: {{sink: {{type: jsonl, path: '{records}'}}, content: true, "
            f"sample_rate: {sample_rate}}}"
        )
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
    """Each row's prompt at ``rate`` per second (open loop), with ``x-request-id``
    ``LABEL-i`` (the gateway keeps a sane client id: its records carry it); per request:
    its index, id, status and latency as the client saw it."""
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    results: list[dict[str, Any]] = [{} for _ in rows]
    bar = tqdm(total=len(rows), desc=label, unit="req", file=sys.stderr)
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int, row: dict[str, Any], at: float) -> None:
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            body = {"model": "auto", "messages": [{"role": "user", "content": row["prompt"]}]}
            request_id = f"{label}-{i}"
            started = time.perf_counter()
            async with session.post(url, json=body, headers={"x-request-id": request_id}) as r:
                await r.read()
            results[i] = {
                "index": i,
                "status": r.status,
                "request_id": request_id,
                "latency_ms": (time.perf_counter() - started) * 1000,
            }
            bar.update()

        start = time.perf_counter() + 0.2
        await asyncio.gather(*(one(i, r, start + i / rate) for i, r in enumerate(rows)))
    bar.close()
    return results


async def gateway_metrics(port: int) -> dict[str, float]:
    """The shadow and records counters from /metrics, summed over labels but the
    reason, once they stop moving (shadow calls still finishing)."""
    totals: dict[str, float] = {}
    pattern = re.compile(r"(router_(?:shadow|records)_\w+?)(?:_total)?(\{.*\})? ([0-9.e+-]+)$")
    async with aiohttp.ClientSession() as session:
        for _ in range(120):
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                text = await response.text()
            now: dict[str, float] = {}
            for line in text.splitlines():
                match = pattern.match(line)
                if not match or line.startswith("#") or match.group(1).endswith("_created"):
                    continue
                key = match.group(1)
                reason = re.search(r'reason="(\w+)"', line)
                if reason:
                    key += "_" + reason.group(1)
                now[key] = now.get(key, 0.0) + float(match.group(3))
            if now and now == totals:
                break
            totals = now
            await asyncio.sleep(0.5)
    return totals


def check_complete(
    records: list[dict[str, Any]],
    results: list[dict[str, Any]],
    metrics: dict[str, float],
    every: bool,
) -> dict[str, int]:
    """After the gateway's SIGTERM: its records file holds a served record, with prompt
    and answer, for every request it answered (``every``: sample_rate 1) or at least for
    every shadowed one, and a shadow record for every shadow call its metrics counted;
    the sink dropped none. Fails loudly otherwise."""
    served = {r["request_id"]: r for r in records if r.get("kind") == "served"}
    shadow = [r for r in records if r.get("kind") == "shadow"]
    problems = []
    ids = {r["request_id"] for r in results}
    if set(served) - ids:
        problems.append(f"{len(set(served) - ids)} served records of requests never sent")
    expected = ids if every else {r["request_id"] for r in shadow}
    missing = sorted(expected - served.keys())
    if missing:
        problems.append(f"{len(missing)} requests without a served record ({missing[:3]})")
    bare = [i for i, r in served.items() if not (r.get("prompt") and r.get("answer"))]
    if bare:
        problems.append(f"{len(bare)} served records without prompt or answer ({bare[:3]})")
    calls = sum(v for k, v in metrics.items() if k.startswith("router_shadow_calls"))
    if len(shadow) != calls:
        problems.append(f"{len(shadow)} shadow records for {calls:g} shadow calls")
    dropped = {k: v for k, v in metrics.items() if k.startswith("router_records_dropped") and v}
    if dropped:
        problems.append(f"records dropped: {dropped}")
    if problems:
        raise SystemExit("records incomplete after shutdown: " + "; ".join(problems))
    return {"served": len(served), "shadow": len(shadow)}


def split_records(folder: Path, held: set[str], out: Path) -> None:
    """The gateway's record lines, as written, into ``out/train`` (every request but
    ``held``) and ``out/held``: a later slice of traffic kept out of training."""
    (out / "train").mkdir(parents=True)
    (out / "held").mkdir(parents=True)
    with (
        (out / "train" / "records.jsonl").open("wb") as train,
        (out / "held" / "records.jsonl").open("wb") as kept,
    ):
        for path in record_files([folder]):
            for line in path.read_bytes().splitlines(keepends=True):
                if line.strip():
                    rid = orjson.loads(line).get("request_id")
                    (kept if rid in held else train).write(line)


def same_rows(live: Path, data: Path, out: Path) -> dict[str, int]:
    """``data``'s rows for the prompts of the wide rows ``live`` (made from records),
    without scores, written to ``out``; and how many answers and costs differ."""
    by_prompt = {row["prompt"]: row for row in map(orjson.loads, data.read_bytes().splitlines())}
    rows = [orjson.loads(line) for line in live.read_bytes().splitlines()]
    answers = costs = 0
    with out.open("wb") as fh:
        for row in rows:
            truth = by_prompt[row["prompt"]]
            answers += sum(a != truth["responses"][m] for m, a in row["responses"].items())
            costs += sum(abs(c - truth["costs"][m]) > 1e-6 for m, c in row["costs"].items())
            fh.write(orjson.dumps({k: v for k, v in truth.items() if k != "scores"}) + b"\n")
    return {"rows": len(rows), "answers_differing": answers, "costs_differing": costs}


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
    parser.add_argument(
        "--sample-rate",
        type=float,
        default=1.0,
        help="records' sample_rate with shadow on (a shadowed request's served record is "
        "always kept); the records-only phase records every request",
    )
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
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    art = work / "artifacts"

    say("1. offline selectors on train.jsonl (kNN on the true scores; CASCAL label-free)")
    for algorithm in ("knn", "cascal"):
        quiet_cli(
            "train",
            "--algorithm",
            algorithm,
            "--data",
            str(train),
            "--out",
            str(art / f"offline-{algorithm}"),
            "--quiet",
        )

    latency: dict[str, list[dict[str, Any]]] = {}
    complete: dict[str, dict[str, int]] = {}
    counters: dict[str, dict[str, float]] = {}
    with upstream_process("--data", str(train), "--data", str(dev)) as up:
        for phase, (recorded, shadowed, every) in PHASES.items():
            folder = work / f"records-{phase}"
            config = work / f"policy-{phase}.yaml"
            config.write_text(
                policy(
                    models,
                    up,
                    art / "offline-knn",
                    folder / "records.jsonl" if recorded else None,
                    args.share if shadowed else None,
                    # the "records" phase records every request: the most records cost
                    args.sample_rate if shadowed else 1.0,
                )
            )
            subset = rows if every else rows[: args.latency_requests]
            say(f"2. {phase}: {len(subset)} requests at {args.rate:g}/s")
            with gateway(config, work / f"gateway-{phase}.log") as port:
                results = asyncio.run(replay(port, subset, args.rate, phase))
                if recorded:
                    counters[phase] = asyncio.run(gateway_metrics(port))
            failed = sum(r["status"] != 200 for r in results)
            if failed:
                raise SystemExit(f"{failed} requests failed in phase {phase}")
            latency[phase] = results
            if recorded:  # the gateway has exited: its sink is flushed and closed
                written = list(read_records([folder]))
                complete[phase] = check_complete(
                    written, results, counters[phase], not shadowed or args.sample_rate >= 1.0
                )

    records_dir = work / "records-on"
    records = list(read_records([records_dir]))
    shadowed_ids = {r["request_id"] for r in records if r["kind"] == "shadow"}
    on = latency["on"]
    n = args.latency_requests

    def of(phase: str, keep: Any = None) -> dict[str, float]:
        return percentiles([r["latency_ms"] for r in latency[phase] if keep is None or keep(r)])

    figures: dict[str, Any] = {
        "latency": {
            "off": of("off"),
            "records_on_shadow_off": of("records"),
            "shadow_on_same_prompts": percentiles([r["latency_ms"] for r in on[:n]]),
            "shadow_on_all": of("on"),
            "shadow_on_sampled": of("on", lambda r: r["request_id"] in shadowed_ids),
            "shadow_on_not_sampled": of("on", lambda r: r["request_id"] not in shadowed_ids),
            "off_again": of("off_again"),
        },
        "gateway_metrics": counters,
        "records_written": complete,
        "records_bytes": sum(p.stat().st_size for p in record_files([records_dir])),
    }

    say("3. the gateway's records: the first 80% of shadowed requests train, the rest held out")
    served_time = {r["request_id"]: r["time"] for r in records if r["kind"] == "served"}
    order = sorted(shadowed_ids, key=served_time.__getitem__)
    held_ids = set(order[int(len(order) * 0.8) :])
    split_records(records_dir, held_ids, work / "split")
    _, train_report = join_records(read_records([work / "split" / "train"]))
    held_rows, held_report = join_records(read_records([work / "split" / "held"]))
    write_rows(held_rows, work / "live-held.jsonl")

    say("4. retrain CASCAL on the recorded traffic")
    quiet_cli(
        "train",
        "--algorithm",
        "cascal",
        "--records",
        str(work / "split" / "train"),
        "--out",
        str(art / "live-cascal"),
        "--wide-out",
        str(work / "live-train.jsonl"),
        "--quiet",
    )
    live_rows = len(read_rows(work / "live-train.jsonl"))
    # The control: CASCAL on the dataset's own rows for the same prompts (its answers,
    # costs and task; no scores). Equal answers and costs say the records lost nothing on
    # the way; the control's curve says what CASCAL makes of that sample of prompts.
    fidelity = same_rows(work / "live-train.jsonl", train, work / "same-rows.jsonl")
    quiet_cli(
        "train",
        "--algorithm",
        "cascal",
        "--data",
        str(work / "same-rows.jsonl"),
        "--out",
        str(art / "same-rows-cascal"),
        "--quiet",
    )

    say("5. the held-out live slice, judged by consensus (judge checked on train's labels)")
    routers = [
        str(art / n) for n in ("offline-knn", "live-cascal", "same-rows-cascal", "offline-cascal")
    ]
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
            "shadowed": len(shadowed_ids),
            "live_train_rows": live_rows,
            "live_held_rows": len(held_rows),
            "train_join": train_report.lines(),
            "held_join": held_report.lines(),
        },
        "records_vs_dataset": fidelity,
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
