"""Fault scenarios: an upstream that says success and sends what no API would (issue 19,
items 4-6). A ``router-proxy serve`` process in front of ``tests/support/bad_upstream``
(a real HTTP server answering by model name), loaded over loopback, bounded in requests:

bad-answers   200s that are not answers (an error object, a JSON array, ``{}``, a
              redirect, JSON to a stream request), malformed usage (a string, a list,
              negative, 10**15; plain and streamed), streams whose first event is not a
              JSON object; through the OpenAI and the Anthropic provider. Every request
              must be a complete 200: from the fallback where the answer was not one, from
              the model itself where only its usage was malformed; with no fallback
              left, a well-formed 502. No traceback in the log, no request left in flight.
bad-streams   streams whose later event is not a chunk (not JSON; ``"choices": 5``): a
              200 whose last event is the error event, never ``[DONE]``, and a log line
              that says ``upstream_error``.
huge-event    concurrent streams whose first event is 50 MB with no newline: each cut
              off at the event cap and answered by the fallback, the gateway's RSS grows
              by less than 64 MB, and ``/health`` answers meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.faults.load import Outcome, chat_body, count, fire
from tests.support.bad_upstream import HUGE_LINE_BYTES, TEXT, BadUpstream
from tests.support.gateway_process import GatewayProcess
from tests.support.upstream import FakeUpstream

NOT_ANSWERS = ["error-200", "array-200", "empty-200", "redirect"]
BAD_USAGE = ["usage-string", "usage-list", "usage-negative", "usage-huge"]
STREAM_USAGE = ["stream-usage-negative", "stream-usage-string"]
BAD_FIRST = ["stream-json", "stream-bad-first", "stream-array-first"]
BAD_LATER = ["stream-bad-later", "stream-choices-5"]
ATTACK_REQUESTS = 30  # per case (model x stream or not) in bad-answers and bad-streams
RSS_LIMIT_MB = 64
HUGE_CONCURRENCY = 8
HUGE_ROUNDS = 3


def policy(upstream: str) -> str:
    """``NAME`` / ``ant-NAME`` fall back to ``ok`` / ``ok-ant``; ``alone-NAME`` has none."""
    models = [
        "  ok: {provider: bad, upstream_model: ok}",
        "  ok-ant: {provider: ant, upstream_model: ok}",
    ]
    names = [*NOT_ANSWERS, *BAD_USAGE, *STREAM_USAGE, *BAD_FIRST, *BAD_LATER, "stream-huge-line"]
    for name in names:
        models += [
            f"  {name}: {{provider: bad, upstream_model: {name}, fallbacks: [ok]}}",
            f"  ant-{name}: {{provider: ant, upstream_model: {name}, fallbacks: [ok-ant]}}",
            f"  alone-{name}: {{provider: bad, upstream_model: {name}}}",
        ]
    return (
        f'providers:\n  bad: {{type: openai, base_url: "{upstream}/v1"}}\n'
        f'  ant: {{type: anthropic, base_url: "{upstream}", api_key: k}}\n'
        "models:\n" + "\n".join(models) + "\n"
        "resilience: {breaker: {enabled: false}}  # every request really meets the fault\n"
        "decisions:\n  - {name: default, when: true, route: {candidates: [ok]}}\n"
    )


def _text(outcome: Outcome) -> str:
    """The answer's text: the message's, or the stream's deltas."""
    if not outcome.stream:
        return str(outcome.json()["choices"][0]["message"]["content"])
    pieces = []
    for event in outcome.body.split("\n\n"):
        if event.startswith("data: {"):
            choices = json.loads(event[6:]).get("choices") or [{}]
            pieces.append(choices[0].get("delta", {}).get("content") or "")
    return "".join(pieces)


def _answered_by(outcome: Outcome, model: str) -> bool:
    if not outcome.complete or outcome.headers.get("x-router-model") != model:
        return False
    try:
        return _text(outcome) == TEXT
    except (ValueError, KeyError, IndexError, TypeError):
        return False


def _well_formed_502(outcome: Outcome) -> bool:
    try:
        error = outcome.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return outcome.status == 502 and error.get("type") == "upstream_error"


def _gauge(gateway: GatewayProcess) -> float:
    for line in httpx.get(gateway.base_url + "/metrics").text.splitlines():
        if line.startswith("router_requests_in_flight "):
            return float(line.split()[-1])
    return -1.0


def _clean_log(gateway: GatewayProcess) -> bool:
    output = gateway.output()
    return "Traceback" not in output and "unhandled error" not in output


def _verdict(name: str, ok: bool, line: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'} {name}: {line}", flush=True)
    return ok


def bad_answers(args: argparse.Namespace, _: FakeUpstream, work: Path) -> dict[str, Any]:
    n = ATTACK_REQUESTS
    cases: list[tuple[str, bool, str]] = []  # (model asked, stream, who must answer)
    for prefix, ok in (("", "ok"), ("ant-", "ok-ant")):
        cases += [(prefix + name, False, ok) for name in NOT_ANSWERS]
        cases += [(prefix + name, True, ok) for name in BAD_FIRST]
        cases += [(prefix + name, False, prefix + name) for name in BAD_USAGE]
        cases += [(prefix + name, True, prefix + name) for name in STREAM_USAGE]
    alone = [(f"alone-{name}", name in BAD_FIRST) for name in [*NOT_ANSWERS, *BAD_FIRST]]
    with BadUpstream() as up, GatewayProcess(policy(up.base_url), work, "bad-answers") as gateway:
        bodies = [
            (gateway.base_url, chat_body(model, f"q{i}", stream))
            for model, stream, _ in cases
            for i in range(n)
        ]
        bodies += [
            (gateway.base_url, chat_body(model, "q", stream)) for model, stream in alone
        ] * max(1, n // 4)
        began = time.perf_counter()
        outcomes = asyncio.run(fire(bodies, args.concurrency, "bad-answers"))
        took = time.perf_counter() - began
        in_flight, clean = _gauge(gateway), _clean_log(gateway)
    expected = [who for _, _, who in cases for _ in range(n)]
    answered = sum(_answered_by(o, who) for o, who in zip(outcomes, expected, strict=False))
    refused = outcomes[len(expected) :]
    good_502 = sum(_well_formed_502(o) for o in refused)
    wrong = [
        (o.request_id, o.status, o.body[:120])
        for o, who in zip(outcomes, expected, strict=False)
        if not _answered_by(o, who)
    ]
    result = {
        "requests": len(outcomes),
        "answered_200_as_expected": answered,
        "no_fallback_left_502": good_502,
        "statuses": count(outcomes, lambda o: o.status or o.failure),
        "in_flight_after": in_flight,
        "log_without_traceback": clean,
        "wrong_examples": wrong[:5],
        "seconds": round(took, 2),
    }
    ok = answered == len(expected) and good_502 == len(refused) and in_flight == 0 and clean
    result["pass"] = _verdict(
        "bad-answers",
        ok,
        f"{answered}/{len(expected)} complete 200 from the fallback (not an answer) or the "
        f"model (malformed usage), {good_502}/{len(refused)} well-formed 502 with no "
        f"fallback; in flight after: {in_flight:g}; traceback-free log: {clean}",
    )
    return result


def bad_streams(args: argparse.Namespace, _: FakeUpstream, work: Path) -> dict[str, Any]:
    n = ATTACK_REQUESTS
    models = [prefix + name for prefix in ("", "ant-") for name in BAD_LATER]
    with BadUpstream() as up, GatewayProcess(policy(up.base_url), work, "bad-streams") as gateway:
        url = gateway.base_url
        bodies = [(url, chat_body(model, f"q{i}", True)) for model in models for i in range(n)]
        outcomes = asyncio.run(fire(bodies, args.concurrency, "bad-streams"))
        in_flight, clean = _gauge(gateway), _clean_log(gateway)
        logged = {
            row["request_id"]: row.get("error")
            for row in map(json.loads, filter(None, gateway.output().splitlines()))
            if row.get("logger") == "router_proxy.access"
        }
    ended_with_error = sum(
        o.status == 200
        and "data: [DONE]" not in o.body
        and o.body.strip().split("\n\n")[-1].startswith('data: {"error"')
        and logged.get(o.request_id) == "upstream_error"
        for o in outcomes
    )
    result = {
        "requests": len(outcomes),
        "ended_with_error_event_and_logged": ended_with_error,
        "statuses": count(outcomes, lambda o: o.status or o.failure),
        "in_flight_after": in_flight,
        "log_without_traceback": clean,
    }
    result["pass"] = _verdict(
        "bad-streams",
        ended_with_error == len(outcomes) and in_flight == 0 and clean,
        f"{ended_with_error}/{len(outcomes)} streams ended with the error event (no [DONE]) "
        f"and were logged upstream_error; in flight after: {in_flight:g}",
    )
    return result


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def huge_event(args: argparse.Namespace, _: FakeUpstream, work: Path) -> dict[str, Any]:
    rounds = HUGE_ROUNDS
    with BadUpstream() as up, GatewayProcess(policy(up.base_url), work, "huge-event") as gateway:
        assert gateway.proc is not None
        asyncio.run(fire([(gateway.base_url, chat_body("ok", "warm"))] * 20, 4, "warm-up"))
        before = _rss_mb(gateway.proc.pid)
        outcomes, probes, peak = asyncio.run(_huge_load(gateway, rounds))
        after = _rss_mb(gateway.proc.pid)
        clean = _clean_log(gateway)
    by_fallback = sum(_answered_by(o, "ok") for o in outcomes)
    grown = max(after, peak) - before
    result = {
        "streams": len(outcomes),
        "bytes_offered_per_stream": HUGE_LINE_BYTES,
        "answered_200_by_fallback": by_fallback,
        "probes_answered": f"{sum(p == 200 for p in probes)}/{len(probes)}",
        "rss_before_mb": round(before, 1),
        "rss_peak_mb": round(peak, 1),
        "rss_after_mb": round(after, 1),
        "log_without_traceback": clean,
    }
    ok = (
        by_fallback == len(outcomes)
        and probes
        and all(p == 200 for p in probes)
        and grown < RSS_LIMIT_MB
        and clean
    )
    result["pass"] = _verdict(
        "huge-event",
        bool(ok),
        f"{by_fallback}/{len(outcomes)} 50 MB-line streams answered by the fallback "
        f"({HUGE_CONCURRENCY} at a time, {rounds} rounds); RSS {before:.0f} -> peak "
        f"{peak:.0f} -> {after:.0f} MB (limit +{RSS_LIMIT_MB}); /health "
        f"{result['probes_answered']} while in flight",
    )
    return result


async def _huge_load(
    gateway: GatewayProcess, rounds: int
) -> tuple[list[Outcome], list[int], float]:
    assert gateway.proc is not None
    pid, probes, peak = gateway.proc.pid, [], 0.0
    outcomes: list[Outcome] = []
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(rounds):
            body = chat_body("stream-huge-line", "q", True)
            task = asyncio.ensure_future(
                fire([(gateway.base_url, body)] * HUGE_CONCURRENCY, HUGE_CONCURRENCY, "huge")
            )
            while not task.done():  # a probe and an RSS sample every 50 ms meanwhile
                probes.append((await client.get(gateway.base_url + "/health")).status_code)
                peak = max(peak, _rss_mb(pid))
                await asyncio.sleep(0.05)
            outcomes += task.result()
    return outcomes, probes, peak


SCENARIOS = {"bad-answers": bad_answers, "bad-streams": bad_streams, "huge-event": huge_event}
