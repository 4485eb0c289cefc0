"""Fault benchmarks (issue 7, item 9): the gateway under load while its parts fail.

Everything is real and on loopback: gateways are ``python -m router_proxy serve``
processes, the upstream is the tests' fake (a real HTTP server that fails on demand), a
``ResettingServer`` resets every connection, a closed port refuses them, and Redis is a
``redis-server`` started here. Four scenarios, each bounded in requests and time:

fallback      2,000 requests, 50 concurrent; the first candidate answers 500 every time:
              every request must be answered 200 by the fallback (run with the breaker
              off, so every request really fails over, and with the default breaker)
down          every candidate down (connection reset, connection refused, 500, hang past
              its timeout): every answer must be a well-formed OpenAI 503, within the
              request's deadline
sigterm       a steady load (plain requests and streams), SIGTERM mid-run: every request
              the gateway accepted must get a complete 200; connections refused after the
              signal are counted apart; the process must exit 0
shared-limit  two gateway processes on one Redis with a limit of 100 requests a minute,
              300 requests: admitted in all within 100 +- 1

and the loop attacks of ``loop_attacks.py`` (issue 19 items 1-3: regex-chat, regex-route,
pii-redact, pii-signal, route-limit).

    .venv/bin/python -m benchmarks.faults.run [--only sigterm] [--requests 2000]

Prints progress and one verdict line per scenario; writes ``results/faults.json`` (and
each gateway's policy and log under ``results/logs/``). Exit
status 0 when every verdict is PASS, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.faults import upstream_attacks
from benchmarks.faults.client_attacks import SCENARIOS as CLIENT_ATTACKS
from benchmarks.faults.load import Outcome, chat_body, count, fire, percentile, send
from benchmarks.faults.loop_attacks import SCENARIOS as LOOP_ATTACKS
from benchmarks.faults.loop_attacks import add_arguments as loop_attack_arguments
from benchmarks.faults.misc_attacks import MISC_SCENARIOS
from tests.support.gateway_process import GatewayProcess
from tests.support.redis_server import RedisServer, free_port, require_redis_server
from tests.support.upstream import FakeUpstream, ResettingServer

HERE = Path(__file__).resolve().parent

RESULTS = HERE / "results"
Scenario = Callable[[argparse.Namespace, FakeUpstream, Path], dict[str, Any]]

FALLBACK_POLICY = """\
providers:
  up: {{type: openai, base_url: "{upstream}/v1"}}
models:
  broken: {{provider: up, upstream_model: fail-500}}
  echo: {{provider: up, upstream_model: echo}}
resilience: {{breaker: {{enabled: {breaker}}}}}
decisions:
  - {{name: default, when: true, route: {{candidates: [broken, echo]}}}}
"""

DOWN_DEADLINE = 3.0
DOWN_POLICY = """\
providers:
  up: {{type: openai, base_url: "{upstream}/v1"}}
  resetting: {{type: openai, base_url: "{resetting}/v1"}}
  closed: {{type: openai, base_url: "http://127.0.0.1:{closed}/v1"}}
models:
  reset: {{provider: resetting}}
  refused: {{provider: closed}}
  broken: {{provider: up, upstream_model: fail-500}}
  stuck: {{provider: up, upstream_model: hang, timeouts: {{connect: 0.5, total: 1.0}}}}
resilience:
  breaker: {{enabled: {breaker}}}
  retries: {{attempts_per_model: 2, max_attempts: 6, backoff_initial: 0.05,
            deadline: {deadline}}}
decisions:
  - {{name: default, when: true, route: {{candidates: [reset, refused, broken, stuck]}}}}
"""

SIGTERM_POLICY = """\
server: {{shutdown_grace: 30}}
providers:
  up: {{type: openai, base_url: "{upstream}/v1"}}
models:
  echo: {{provider: up, upstream_model: echo}}
  streamer: {{provider: up, upstream_model: slow-stream}}
decisions:
  - {{name: default, when: true, route: {{candidates: [echo]}}}}
"""

LIMIT = 100
LIMIT_POLICY = """\
providers:
  up: {{type: openai, base_url: "{upstream}/v1"}}
models:
  echo: {{provider: up, upstream_model: echo}}
limits: {{per_client: {{requests_per_minute: {limit}}}}}
state: {{backend: redis, url: "{redis}", key_prefix: {prefix}}}
decisions:
  - {{name: default, when: true, route: {{candidates: [echo]}}}}
"""


def verdict(name: str, ok: bool, line: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'} {name}: {line}", flush=True)
    return ok


def fallback(args: argparse.Namespace, upstream: FakeUpstream, work: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for breaker in ("false", "true"):
        label = f"fallback, breaker {'on' if breaker == 'true' else 'off'}"
        text = FALLBACK_POLICY.format(upstream=upstream.base_url, breaker=breaker)
        with GatewayProcess(text, work, f"fallback-{breaker}") as gateway:
            bodies = [
                (gateway.base_url, chat_body("auto", f"question {i}")) for i in range(args.requests)
            ]
            began = time.perf_counter()
            outcomes = asyncio.run(fire(bodies, args.concurrency, label))
            took = time.perf_counter() - began
        by_fallback = sum(
            1 for o in outcomes if o.complete and o.headers.get("x-router-model") == "echo"
        )
        found[f"breaker_{'on' if breaker == 'true' else 'off'}"] = result = {
            "requests": len(outcomes),
            "answered_200_by_fallback": by_fallback,
            "statuses": count(outcomes, lambda o: o.status or o.failure),
            "attempts_header": count(outcomes, lambda o: o.headers.get("x-router-attempts")),
            "seconds": round(took, 2),
            "requests_per_s": round(len(outcomes) / took, 1),
            "p50_ms": round(percentile([o.seconds for o in outcomes], 0.5) * 1000, 1),
            "p99_ms": round(percentile([o.seconds for o in outcomes], 0.99) * 1000, 1),
        }
        result["pass"] = verdict(
            label,
            by_fallback == len(outcomes),
            f"{by_fallback}/{len(outcomes)} answered 200 by the fallback 'echo' "
            f"(x-router-attempts {result['attempts_header']}; {result['requests_per_s']} req/s, "
            f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms)",
        )
    return found


def well_formed_503(outcome: Outcome) -> bool:
    if outcome.status != 503 or outcome.failure is not None:
        return False
    try:
        error = outcome.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return (
        outcome.headers.get("content-type", "").startswith("application/json")
        and isinstance(error.get("message"), str)
        and error.get("type") == "service_unavailable"
        and error.get("code") in ("all_candidates_failed", "no_healthy_candidate")
        and "retry-after" in outcome.headers
    )


def down(args: argparse.Namespace, upstream: FakeUpstream, work: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    with ResettingServer() as resetting:
        for breaker in ("false", "true"):
            label = f"down, breaker {'on' if breaker == 'true' else 'off'}"
            text = DOWN_POLICY.format(
                upstream=upstream.base_url,
                resetting=resetting.base_url,
                closed=free_port(),
                breaker=breaker,
                deadline=DOWN_DEADLINE,
            )
            with GatewayProcess(text, work, f"down-{breaker}") as gateway:
                bodies = [
                    (gateway.base_url, chat_body("auto", "hello"))
                    for _ in range(args.down_requests)
                ]
                outcomes = asyncio.run(fire(bodies, args.concurrency, label))
            good = sum(1 for o in outcomes if well_formed_503(o))
            # The deadline is the gateway's promise, timed by the gateway (its access log:
            # from the request's arrival to its answer); the client's view adds this
            # machine's queueing (the client, the upstream and the gateway share 2 cores).
            served = _access_log(gateway.output())
            gateway_ms = [float(row["latency_ms"]) for row in served]
            slowest = max(gateway_ms) / 1000
            client_slowest = max(o.seconds for o in outcomes)
            found[f"breaker_{'on' if breaker == 'true' else 'off'}"] = result = {
                "requests": len(outcomes),
                "well_formed_503": good,
                "codes": count(outcomes, lambda o: _error_code(o)),
                "statuses": count(outcomes, lambda o: o.status or o.failure),
                "deadline_s": DOWN_DEADLINE,
                "gateway_p50_s": round(
                    percentile([r["latency_ms"] for r in served], 0.5) / 1000, 3
                ),
                "gateway_max_s": round(slowest, 3),
                "client_p50_s": round(percentile([o.seconds for o in outcomes], 0.5), 3),
                "client_max_s": round(client_slowest, 3),
            }
            result["pass"] = verdict(
                label,
                good == len(outcomes) == len(served) and slowest < DOWN_DEADLINE,
                f"{good}/{len(outcomes)} well-formed 503 {result['codes']}; slowest "
                f"{slowest:.2f} s in the gateway, {client_slowest:.2f} s at the client "
                f"(deadline {DOWN_DEADLINE} s)",
            )
    return found


def _error_code(outcome: Outcome) -> str:
    try:
        return str(outcome.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "-"


def sigterm(args: argparse.Namespace, upstream: FakeUpstream, work: Path) -> dict[str, Any]:
    gateway = GatewayProcess(SIGTERM_POLICY.format(upstream=upstream.base_url), work, "sigterm")
    gateway.start()
    outcomes, signalled = asyncio.run(_sigterm_load(args, gateway))
    code = gateway.wait(timeout=60)
    gateway.stop()
    logged = _logged_ids(gateway.output())
    refused = [o for o in outcomes if o.failure == "refused"]
    # Reset before any answer, and never seen by the gateway (no access-log line): the
    # connection was in the listen backlog, or its request not yet read, when the
    # listener closed. Not accepted, like the refused ones.
    unread = [o for o in outcomes if o.failure == "reset" and o.request_id not in logged]
    ok = [o for o in outcomes if o.complete]
    lost = [o for o in outcomes if not o.complete and o not in refused and o not in unread]
    in_flight = [o for o in ok if o.started < signalled < o.started + o.seconds]
    cancelled = "timeout graceful shutdown exceeded" in gateway.output()
    result = {
        "requests": len(outcomes),
        "complete_200": len(ok),
        "in_flight_at_sigterm_completed": len(in_flight),
        "streams_in_flight_at_sigterm_completed": sum(1 for o in in_flight if o.stream),
        "refused_not_accepted": len(refused),
        "accepted_after_signal_completed": sum(1 for o in ok if o.started > signalled),
        "reset_before_read_not_accepted": len(unread),
        "reset_exceptions": count(unread, lambda o: o.exception),
        "grace_exceeded": cancelled,
        "lost": len(lost),
        "lost_examples": [(o.status, o.failure, o.body[:200]) for o in lost[:5]],
        "exit_code": code,
        "drain_s": round(max(o.started + o.seconds for o in outcomes) - signalled, 2),
    }
    result["pass"] = verdict(
        "sigterm",
        not lost and code == 0 and not cancelled and not logged - {o.request_id for o in ok},
        f"{len(ok)} complete 200 ({len(in_flight)} in flight at the signal, "
        f"{result['streams_in_flight_at_sigterm_completed']} of them streams), "
        f"{len(lost)} lost; {len(refused)} refused and {len(unread)} reset before the "
        f"gateway read them (not accepted); exit code {code}",
    )
    return result


async def _sigterm_load(
    args: argparse.Namespace, gateway: GatewayProcess
) -> tuple[list[Outcome], float]:
    """``concurrency`` clients in a loop (one request in five a 1 s stream) until their
    connection is refused; SIGTERM after ``sigterm_after`` seconds."""
    import httpx

    outcomes: list[Outcome] = []
    signalled = float("inf")
    stop = time.perf_counter() + args.sigterm_after + 30  # a bound, whatever happens

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=100)) as client:

        async def worker(i: int) -> None:
            n = 0
            while time.perf_counter() < stop:
                n += 1
                stream = (i + n) % 5 == 0
                body = chat_body("streamer" if stream else "auto", "one two three four", stream)
                outcome = await send(client, gateway.base_url, body)
                outcomes.append(outcome)
                if outcome.failure == "refused":
                    return

        async def signal_later() -> None:
            nonlocal signalled
            await asyncio.sleep(args.sigterm_after)
            print(f"  [sigterm] {len(outcomes)} answered; SIGTERM", flush=True)
            signalled = time.perf_counter()
            gateway.terminate()

        await asyncio.gather(signal_later(), *(worker(i) for i in range(args.concurrency)))
    print(f"  [sigterm] {len(outcomes)} requests sent in all", flush=True)
    return outcomes, signalled


def _access_log(output: str) -> list[dict[str, Any]]:
    """The gateway's access-log lines: one per request it handled."""
    return [json.loads(line) for line in output.splitlines() if '"router_proxy.access"' in line]


def _logged_ids(output: str) -> set[str]:
    return {str(row["request_id"]) for row in _access_log(output)}


def shared_limit(args: argparse.Namespace, upstream: FakeUpstream, work: Path) -> dict[str, Any]:
    with RedisServer(require_redis_server()) as redis:
        text = LIMIT_POLICY.format(
            upstream=upstream.base_url, redis=redis.url, limit=LIMIT, prefix="bench"
        )
        replicas = [GatewayProcess(text, work, f"replica-{i}") for i in range(2)]
        for replica in replicas:
            replica.spawn()
        try:
            for replica in replicas:
                replica.wait_ready()
            bodies = [
                (replicas[i % 2].base_url, chat_body("auto", f"hi {i}")) for i in range(3 * LIMIT)
            ]
            outcomes = asyncio.run(fire(bodies, args.concurrency, "shared-limit"))
        finally:
            for replica in replicas:
                replica.stop()
    admitted = sum(1 for o in outcomes if o.status == 200)
    refused = [o for o in outcomes if o.status == 429]
    well_formed = all(
        o.headers.get("retry-after") and o.headers.get("x-ratelimit-limit-requests") == str(LIMIT)
        for o in refused
    )
    result = {
        "requests": len(outcomes),
        "limit_per_minute": LIMIT,
        "admitted": admitted,
        "admitted_per_replica": [
            sum(1 for j, o in enumerate(outcomes) if j % 2 == i and o.status == 200)
            for i in range(2)
        ],
        "refused_429": len(refused),
        "refusals_well_formed": well_formed,
        "statuses": count(outcomes, lambda o: o.status or o.failure),
    }
    result["pass"] = verdict(
        "shared-limit",
        abs(admitted - LIMIT) <= 1 and admitted + len(refused) == len(outcomes) and well_formed,
        f"{admitted} admitted of {len(outcomes)} (target {LIMIT} +- 1; per replica "
        f"{result['admitted_per_replica']}), {len(refused)} refused with 429",
    )
    return result


SCENARIOS: dict[str, Scenario] = {
    "fallback": fallback,
    "down": down,
    "sigterm": sigterm,
    "shared-limit": shared_limit,
    **MISC_SCENARIOS,
    **LOOP_ATTACKS,  # issue 19, items 1-3: loop_attacks.py
    **upstream_attacks.SCENARIOS,  # bad-answers, bad-streams, huge-event (issue 19, 4-6)
    **CLIENT_ATTACKS,  # misbehaving clients (issue 19, items 7-11)
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--requests", type=int, default=2000, help="fallback scenario")
    parser.add_argument("--down-requests", type=int, default=500, help="down scenario")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--sigterm-after", type=float, default=3.0, help="seconds of load")
    loop_attack_arguments(parser)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} python {platform.python_version()}",
        "concurrency": args.concurrency,
        "load_average_at_start": os.getloadavg(),
    }
    logs = RESULTS / "logs"  # each gateway's policy and output
    logs.mkdir(parents=True, exist_ok=True)
    with FakeUpstream() as upstream:
        for name in args.only or list(SCENARIOS):
            print(f"== {name}", flush=True)
            results[name] = SCENARIOS[name](args, upstream, logs)
    out = RESULTS / "faults.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out}")
    passed = [
        v["pass"] if "pass" in v else all(part["pass"] for part in v.values())
        for k, v in results.items()
        if k in SCENARIOS
    ]
    return 0 if all(passed) else 1


if __name__ == "__main__":
    sys.exit(main())
