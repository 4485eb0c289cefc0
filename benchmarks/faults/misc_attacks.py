"""Fault scenarios for issue 19's "Other" items, each against ``router-proxy serve``
processes on loopback (registered in ``run.py``):

breaker-intermittent  a first candidate failing 30% of its calls (never twice in a row),
                      then one failing every other call, default breaker, 300 requests
                      each: every answer a 200, and the breaker must open (the model gets
                      at most half of the requests; it got all of them when any success
                      cleared the failure count)
alias-bomb            the policy file rewritten to a billion-laughs YAML (9 levels, 387
                      million nodes in under 1 KB), reloaded 5 times: each reload refused
                      naming the alias bomb, a probe answered 200 after each, and the
                      gateway's peak RSS grows by under 50 MB (it went 108 -> 420 MB)
metrics-key           /metrics open by default (documented), and with
                      ``server.metrics_keys`` refused (401) without the scrape key: no
                      key, a wrong one, a client key, an admin key; answered with it
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.faults.load import chat_body, count, fire
from tests.support.gateway_process import GatewayProcess
from tests.support.upstream import FakeUpstream

ADMIN = "bench-admin-key"
CLIENT = "bench-client-key"
SCRAPE = "bench-scrape-key"
INTERMITTENT_REQUESTS = 300
# How the first candidate fails: F a 500, S an answer.
PATTERNS = {"30% of its calls": "FSSSFSSFSS", "every other call": "FS"}

INTERMITTENT_POLICY = """\
server: {{admin_keys: [{admin}]}}
providers:
  up: {{type: openai, base_url: "{upstream}/v1"}}
models:
  flaky: {{provider: up, upstream_model: script-{script}}}
  echo: {{provider: up, upstream_model: echo}}
decisions:
  - {{name: default, when: true, route: {{candidates: [flaky, echo]}}}}
"""

MOCK_POLICY = """\
server: {{api_keys: [{client}], admin_keys: [{admin}], watch_config: false{extra}}}
providers: {{mock: {{type: mock}}}}
models: {{small: {{provider: mock}}}}
decisions: [{{name: default, when: true, route: {{candidates: [small]}}}}]
"""
BOMB_LEVELS = 9
BOMB_RELOADS = 5
RSS_GROWTH_BOUND_MB = 50.0


def verdict(name: str, ok: bool, line: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'} {name}: {line}", flush=True)
    return ok


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def breaker_intermittent(
    args: argparse.Namespace, upstream: FakeUpstream, work: Path
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for label, pattern in PATTERNS.items():
        script = f"bench-intermittent-{len(found)}"
        steps = (pattern * INTERMITTENT_REQUESTS)[:INTERMITTENT_REQUESTS]
        upstream.scripts[script].extend("fail-500" if c == "F" else "echo" for c in steps)
        text = INTERMITTENT_POLICY.format(admin=ADMIN, upstream=upstream.base_url, script=script)
        with GatewayProcess(text, work, f"intermittent-{len(found)}") as gateway:
            bodies = [
                (gateway.base_url, chat_body("auto", f"q {i}"))
                for i in range(INTERMITTENT_REQUESTS)
            ]
            outcomes = asyncio.run(fire(bodies, args.concurrency, f"intermittent {label}"))
            health = httpx.get(
                gateway.base_url + "/admin/models", headers=bearer(ADMIN), timeout=10
            ).json()["models"]["flaky"]
        answered = sum(1 for o in outcomes if o.complete)
        calls = upstream.calls[script]
        upstream.scripts[script].clear()
        found[label] = result = {
            "requests": len(outcomes),
            "answered_200": answered,
            "by_model": count(outcomes, lambda o: o.headers.get("x-router-model")),
            "calls_to_the_failing_model": calls,
            "breaker_at_the_end": health["breaker"],
        }
        result["pass"] = verdict(
            f"breaker-intermittent, {label}",
            answered == len(outcomes) and calls <= len(outcomes) // 2,
            f"{answered}/{len(outcomes)} answered 200; of the requests, the model failing {label} "
            f"got {calls}; its breaker is {health['breaker']}",
        )
    return found


def billion_laughs(levels: int = BOMB_LEVELS) -> str:
    lines = ["lol0: &lol0 [" + ", ".join(['"lol"'] * 9) + "]"]
    for i in range(1, levels):
        lines.append(f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def peak_rss_mb(gateway: GatewayProcess) -> float:
    assert gateway.proc is not None
    for line in Path(f"/proc/{gateway.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def alias_bomb(args: argparse.Namespace, upstream: FakeUpstream, work: Path) -> dict[str, Any]:
    text = MOCK_POLICY.format(client=CLIENT, admin=ADMIN, extra="")
    body = chat_body("auto", "hello")
    refused, probes, seconds = 0, 0, []
    with (
        GatewayProcess(text, work, "alias-bomb") as gateway,
        httpx.Client(base_url=gateway.base_url, timeout=60) as client,
    ):
        client.post("/v1/chat/completions", json=body, headers=bearer(CLIENT))
        before = peak_rss_mb(gateway)
        gateway.config.write_text(text + billion_laughs())
        for _ in range(BOMB_RELOADS):
            began = time.perf_counter()
            answer = client.post("/admin/reload", headers=bearer(ADMIN))
            seconds.append(time.perf_counter() - began)
            error = answer.json().get("error", {})
            refused += answer.status_code == 400 and "alias bomb" in error.get("message", "")
            probe = client.post("/v1/chat/completions", json=body, headers=bearer(CLIENT))
            probes += probe.status_code == 200
        after = peak_rss_mb(gateway)
    result: dict[str, Any] = {
        "bomb_levels": BOMB_LEVELS,
        "bomb_bytes": len(billion_laughs()),
        "reloads": BOMB_RELOADS,
        "refused_naming_the_bomb": refused,
        "probes_200": probes,
        "slowest_refusal_ms": round(max(seconds) * 1000, 1),
        "peak_rss_before_mb": round(before, 1),
        "peak_rss_after_mb": round(after, 1),
    }
    grown = after - before
    result["pass"] = verdict(
        "alias-bomb",
        refused == probes == BOMB_RELOADS and grown < RSS_GROWTH_BOUND_MB,
        f"{refused}/{BOMB_RELOADS} reloads refused naming the alias bomb (slowest "
        f"{result['slowest_refusal_ms']} ms), {probes}/{BOMB_RELOADS} probes 200; peak RSS "
        f"{before:.0f} -> {after:.0f} MB (bound +{RSS_GROWTH_BOUND_MB:.0f})",
    )
    return result


def metrics_key(args: argparse.Namespace, upstream: FakeUpstream, work: Path) -> dict[str, Any]:
    scrapes = {"none": {}, "wrong": bearer("wrong"), "client": bearer(CLIENT)}
    scrapes |= {"admin": bearer(ADMIN), "scrape": bearer(SCRAPE)}
    statuses: dict[str, dict[str, int]] = {}
    for setup, extra in (("default", ""), ("metrics_keys", f", metrics_keys: [{SCRAPE}]")):
        text = MOCK_POLICY.format(client=CLIENT, admin=ADMIN, extra=extra)
        with GatewayProcess(text, work, f"metrics-{setup}") as gateway:
            statuses[setup] = {
                who: httpx.get(gateway.base_url + "/metrics", headers=h, timeout=10).status_code
                for who, h in scrapes.items()
            }
            statuses[setup]["chat_with_scrape_key"] = httpx.post(
                gateway.base_url + "/v1/chat/completions",
                json=chat_body("auto", "hi"),
                headers=bearer(SCRAPE),
                timeout=10,
            ).status_code
    expected = {
        "default": dict.fromkeys(scrapes, 200) | {"chat_with_scrape_key": 401},
        "metrics_keys": dict.fromkeys(scrapes, 401) | {"scrape": 200, "chat_with_scrape_key": 401},
    }
    result: dict[str, Any] = {"statuses": statuses, "expected": expected}
    result["pass"] = verdict(
        "metrics-key",
        statuses == expected,
        f"default: /metrics open ({statuses['default']['none']} without a key); with "
        f"metrics_keys: {statuses['metrics_keys']}",
    )
    return result


MISC_SCENARIOS = {
    "breaker-intermittent": breaker_intermittent,
    "alias-bomb": alias_bomb,
    "metrics-key": metrics_key,
}
