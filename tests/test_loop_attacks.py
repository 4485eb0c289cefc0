"""Issue 19, items 1-3: one request must not freeze every client.

Against real gateways (``router-proxy serve`` processes with the shipped policies, and
in-process servers on loopback) and a real upstream: bodies that once held the event loop
for seconds (a quadratic regex, a PII scan and redaction of megabytes) are in flight
while probes must still be answered; routing's time budget reports a slow signal as
unknown; the dry run and token counting count against the client's request limit.
Bounds on time are generous (a probe's client timeout); no test asserts a duration.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.faults.loop_attacks import contacts_body, zeros_body
from router_proxy.config.errors import ConfigError
from router_proxy.config.load import load_config, load_config_text
from router_proxy.plugins.redact_pii import RedactOptions, RedactPiiPlugin
from router_proxy.signals import pii
from router_proxy.signals.keyword import KeywordSignal
from router_proxy.signals.patterns import FALLBACK_CHARS, UserPattern, unsafe_reason, window
from tests.conftest import GatewayFactory
from tests.support.gateway_process import ROOT, GatewayProcess
from tests.support.upstream import FakeUpstream

PROBE_TIMEOUT = 20.0  # seconds; the attacks held the loop for 50-86 s before the fixes
SHIPPED = [
    *sorted((ROOT / "configs").glob("*.yaml")),
    ROOT / "docker" / "router" / "policy.yaml",
]
ENV = {"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-test", "VLLM_URL": "http://x/v1"}


# --- item 1: user patterns ------------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_patterns_run_in_linear_time(path: Path) -> None:
    config, _ = load_config(path, env=ENV)
    keyword = [s for s in config.signals if s.type == "keyword"]
    for signal in keyword:
        built = KeywordSignal(signal)  # type: ignore[arg-type]
        for term in [*built._any, *built._all]:
            if term.user is not None:
                assert term.user.engine == "re2", (path.name, term.term)


def test_default_policy_why_pattern_still_routes_questions() -> None:
    config, _ = load_config(ROOT / "configs" / "default.yaml")
    signal = next(s for s in config.signals if s.name == "reasoning")
    built = KeywordSignal(signal)  # type: ignore[arg-type]
    regex = next(t.user for t in built._any if t.user is not None)
    assert regex.search("So why does the sky look blue?") == "why does the sky look blue?"
    assert regex.search("why " * 100_000) is None  # 400 KB, linear on RE2


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(?<=x)(a+)+b", "inside another repetition"),
        (r"(?<!\w)(.*)*", "inside another repetition"),
        (r"(?<=x)(a|aa)*c", "start alike"),
        (r"(?=a)\d+\d+", "without bound 2 times"),
    ],
)
def test_patterns_that_backtrack_catastrophically_on_re_are_refused_at_load(
    pattern: str, reason: str
) -> None:
    quoted = json.dumps("re:" + pattern)
    for signal, path in [
        (f"{{name: bad, type: keyword, any: [fine, {quoted}]}}", "signals[1].any[1]: "),
        (f"{{name: bad, type: header, headers: {{x-tenant: {quoted}}}}}", "signals[1].headers: "),
    ]:
        text = (
            "providers: {mock: {type: mock}}\nmodels: {m: {provider: mock}}\nsignals:\n"
            f"  - {{name: ok, type: keyword, any: [python]}}\n  - {signal}\n"
            "decisions: [{name: default, when: true, route: {candidates: [m]}}]\n"
        )
        with pytest.raises(ConfigError) as info:
            load_config_text(text)
        errors = [str(issue) for issue in info.value.issues]
        assert len(errors) == 1
        assert errors[0].startswith(path), errors
        assert reason in errors[0]
        assert "would run on Python's re" in errors[0]


def test_engines_and_windows() -> None:
    assert UserPattern(r"\bwhy\b.*\?").engine == "re2"
    assert UserPattern(r"\pL+").engine == "re2"  # RE2's own syntax is accepted
    assert UserPattern(r"(?<!\w)c\+\+").engine == "re"  # lookbehind: only re runs it
    hello = "\u043f\u0440\u0438\u0432\u0435\u0442"  # Russian, lower case
    cyrillic = UserPattern(f"\\b{hello}\\b", ignore_case=True)  # RE2's \b is ASCII
    assert cyrillic.engine == "re"
    assert cyrillic.search(f"say {hello.upper()} to all") == hello.upper()
    assert unsafe_reason(r"(?<!\d)(?:\d{1,3}\.){3}\d{1,3}") is None  # bounded: allowed
    # On re, a pattern reads the first and last FALLBACK_CHARS / 2 characters only.
    far = "x" * FALLBACK_CHARS + " c++ " + "x" * FALLBACK_CHARS
    assert UserPattern(r"(?<!\w)c\+\+").search(far) is None
    assert UserPattern(r"(?<!\w)c\+\+").search(far[-FALLBACK_CHARS:] + " c++") == "c++"
    assert window("abcdef", 4) == "ab\nef"
    assert window("abc", 4) == "abc"


def test_keyword_signal_reads_a_bounded_window() -> None:
    config, _ = load_config_text(
        "providers: {mock: {type: mock}}\nmodels: {m: {provider: mock}}\n"
        "signals: [{name: k, type: keyword, any: [python], max_chars: 2048}]\n"
        "decisions: [{name: default, when: true, route: {candidates: [m]}}]\n"
    )
    signal = KeywordSignal(config.signals[0])  # type: ignore[arg-type]
    from router_proxy.context import RequestContext

    def fires(text: str) -> bool:
        return asyncio.run(signal.evaluate(RequestContext.from_prompt(text))).fired

    filler = "lorem " * 1000
    assert fires("python " + filler)  # the start is read
    assert fires(filler + " python")  # the end is read
    assert not fires(filler + " python " + filler)  # the middle of a long prompt is not


# --- item 2: PII work -------------------------------------------------------------------


def test_redaction_masks_digit_runs_past_its_check_budget() -> None:
    plugin = RedactPiiPlugin(RedactOptions(kinds=["phone"], max_phone_checks=2))
    numbers = ["+1 650 253 0000", "+1 650 253 0001", "0000000", "1234567", "555 0199 2222"]
    masked = plugin.redact(" and ".join(numbers) + ", version 3.14159265")
    assert not re.search(r"[0-9]{4}", masked.replace("3.14159265", ""))  # all masked
    assert masked.endswith("version 3.14159265")  # decimals are never phone numbers


def test_chunked_scans_find_what_one_pass_finds() -> None:
    item = "mail a.b@example.com card 4111 1111 1111 1111 ip 10.0.0.1 ssn 123-45-6789 "
    text = "".join(f"{item[i % len(item) :]}{'x' * (i % 7)} " for i in range(2500))
    assert len(text) > 3 * pii._CHUNK
    for pattern in (pii._EMAIL, pii._CARD, pii._SSN, pii._IPV4, pii._PHONE_CANDIDATE):
        one_pass = [m.span() for m in pattern.finditer(text)]
        assert [m.span() for m in pii._finditer(pattern, text)] == one_pass


# --- items 1-2 against real gateways: probes answered while the attacks are in flight ---


async def _attack(base_url: str, path: str, body: dict[str, Any], attackers: int) -> list[Any]:
    """``attackers`` requests with ``body`` in flight; meanwhile GET /health and a small
    chat, one after the other. Returns (attack answers, probe answers, the time each
    probe was answered, the time the last attack was)."""
    data = json.dumps(body).encode()
    small = {"model": "auto", "messages": [{"role": "user", "content": "hello"}]}
    attacks_done: list[float] = []
    probes_done: list[float] = []
    loop = asyncio.get_running_loop()
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=PROBE_TIMEOUT) as probe,
        httpx.AsyncClient(base_url=base_url, timeout=300) as attacks,
    ):

        async def attack() -> httpx.Response:
            headers = {"content-type": "application/json"}
            answer = await attacks.post(path, content=data, headers=headers)
            attacks_done.append(loop.time())
            return answer

        sent = [asyncio.create_task(attack()) for _ in range(attackers)]
        await asyncio.sleep(0.3)  # the bodies are on their way
        answers = []
        for _ in range(5):
            answers.append(await probe.get("/health"))
            answers.append(await probe.post("/v1/chat/completions", json=small))
            probes_done.append(loop.time())
        return [await asyncio.gather(*sent), answers, probes_done, max(attacks_done)]


def test_quadratic_regex_bodies_do_not_freeze_the_default_gateway(tmp_path: Path) -> None:
    why = {"model": "auto", "messages": [{"role": "user", "content": "why " * 100_000}]}
    policy = (ROOT / "configs" / "default.yaml").read_text()
    with GatewayProcess(policy, tmp_path, "default") as gateway:
        for path in ("/v1/chat/completions", "/v1/route"):
            attacks, probes, _, _ = asyncio.run(_attack(gateway.base_url, path, why, 4))
            assert [a.status_code for a in attacks] == [200] * 4
            assert [p.status_code for p in probes] == [200] * 10


def test_pii_bodies_do_not_freeze_the_privacy_gateway(
    tmp_path: Path, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLLM_URL", f"{upstream.base_url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    policy = (ROOT / "configs" / "privacy.yaml").read_text()
    policy = policy.replace("https://api.openai.com/v1", f"{upstream.base_url}/v1")
    # Not this test's subject (a loaded machine could run the pii signal past 250 ms).
    policy += "routing: {budget_ms: 60000}\n"
    with GatewayProcess(policy, tmp_path, "privacy") as gateway:
        # 1.6 MB of "0000000 ": redact_pii checked up to 100,000 phone candidates (86 s).
        attacks, probes, probed, last = asyncio.run(
            _attack(gateway.base_url, "/v1/chat/completions", zeros_body(), 4)
        )
        assert [a.status_code for a in attacks] == [200] * 4
        assert [p.status_code for p in probes] == [200] * 10
        assert probed[0] < last  # answered while attacks were still in flight
        sent = [
            body["messages"][0]["content"]
            for _, _, body in upstream.requests
            if "[PHONE]" in str(body)
        ]
        # Past the first 256 digit runs (checked: not phone numbers) every run is masked.
        assert len(sent) == 4
        assert all(s.rstrip().endswith("[PHONE]") for s in sent)
        assert all(s.count("0000000") <= 3 * 256 for s in sent)
        # 7.9 MB of e-mail- and phone-like text: the pii signal read it all (1.3-1.9 s).
        attacks, probes, _, _ = asyncio.run(
            _attack(gateway.base_url, "/v1/chat/completions", contacts_body(), 2)
        )
        assert [a.status_code for a in attacks] == [200] * 2
        assert {a.headers["x-router-decision"] for a in attacks} == {"private"}
        assert [p.status_code for p in probes] == [200] * 10


# --- item 2: the routing budget ----------------------------------------------------------

BUDGET_POLICY = """\
routing: {budget_ms: 0.001, offload_chars: 100}
providers:
  up: {type: openai, base_url: "${UPSTREAM}/v1"}
models:
  cloud: {provider: up, upstream_model: echo}
  local: {provider: up, upstream_model: echo}
signals:
  - {name: pii, type: pii, kinds: [email]}
decisions:
  - {name: private, priority: 10, when: pii, route: {candidates: [local]}}
  - {name: default, when: true, route: {candidates: [cloud]}}
"""


def test_a_signal_past_the_routing_budget_is_unknown_and_logged(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.support.logs import log_line

    url = make_gateway(BUDGET_POLICY)
    prompt = "write to jane@example.com " + "lorem ipsum " * 200  # long: the pool's
    body = {"model": "auto", "messages": [{"role": "user", "content": prompt}]}
    with caplog.at_level("INFO"):
        answer = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
        assert answer.status_code == 200
        assert answer.headers["x-router-decision"] == "default"  # pii unknown: not fired
        line = log_line(caplog, answer.headers["x-request-id"])
    assert line["signals_timed_out"] == ["pii"]
    plan = httpx.post(f"{url}/v1/route", json=body, timeout=30).json()
    assert plan["timed_out"] == ["pii"]
    assert plan["signals"]["pii"]["detail"].startswith("unknown: no answer within the budget")
    short = {"model": "auto", "messages": [{"role": "user", "content": "jane@example.com"}]}
    plan = httpx.post(f"{url}/v1/route", json=short, timeout=30).json()
    assert plan["decision"] == "private"  # short text is read inline, whatever the budget
    assert plan["timed_out"] == []


# --- item 3: every route that works for a client counts against its limit ----------------

LIMITED_POLICY = """\
limits: {per_client: {requests_per_minute: 2}}
providers:
  up: {type: openai, base_url: "${UPSTREAM}/v1"}
models:
  echo: {provider: up, upstream_model: echo}
decisions:
  - {name: default, when: true, route: {candidates: [echo]}}
"""


def test_dry_run_and_token_counting_apply_the_client_limit(make_gateway: GatewayFactory) -> None:
    chat = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    count = {"model": "claude", "messages": [{"role": "user", "content": "hi"}]}
    url = make_gateway(LIMITED_POLICY)
    assert [httpx.post(f"{url}/v1/chat/completions", json=chat).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    refused = httpx.post(f"{url}/v1/route", json=chat)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert "retry-after" in refused.headers
    counted = httpx.post(f"{url}/v1/messages/count_tokens", json=count)
    assert counted.status_code == 429
    assert counted.json()["type"] == "error"  # in the Messages API's own error shape
    # And the other way round: dry runs spend the same allowance.
    url = make_gateway(LIMITED_POLICY)
    assert [httpx.post(f"{url}/v1/route", json=chat).status_code for _ in range(2)] == [200, 200]
    assert httpx.post(f"{url}/v1/chat/completions", json=chat).status_code == 429
