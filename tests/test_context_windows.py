"""Context windows (issue 16 item 2): candidates a prompt cannot fit are skipped before
any call, an upstream's own context-length refusal moves on to a larger window, and when
nothing fits the client gets OpenAI's 400 ``context_length_exceeded``. Units first, then
a real gateway in front of the real fake upstream, driven by the OpenAI SDK."""

from __future__ import annotations

import logging
import re
from typing import Any

import anthropic
import httpx
import openai
import pytest

from router_proxy.config.errors import ConfigError
from router_proxy.config.load import load_config_text
from router_proxy.context import RequestContext
from router_proxy.engine.context_fit import ContextFit, PromptSize, TokenCache
from router_proxy.errors import InvalidRequestError, UpstreamDetail, UpstreamStatusError
from router_proxy.observability.logging import ACCESS_LOGGER
from router_proxy.protocol import ChatCompletionRequest, ChatMessage
from router_proxy.resilience.overflow import is_context_overflow
from router_proxy.signals.tokens import TokenCount
from tests.conftest import GatewayFactory
from tests.support.logs import log_line
from tests.support.upstream import FakeUpstream

MODELS = """\
providers: {mock: {type: mock}}
models:
  small: {provider: mock, context_window: 8192}
  medium: {provider: mock, context_window: 32000, max_output_tokens: 4096}
  large: {provider: mock, context_window: 200000}
  open: {provider: mock}
decisions:
  - {name: d, when: true, route: {candidates: [small, medium]}, context_fallbacks: [large]}
"""


def fit(policy: str = MODELS) -> ContextFit:
    config, _ = load_config_text(policy)
    return ContextFit(config.models, config.decisions)


def context(words: int, *, max_tokens: int | None = None, **extra: Any) -> RequestContext:
    """A prompt of about ``words`` tokens (" word" is one cl100k token)."""
    raw: dict[str, Any] = {
        "model": "auto",
        "messages": [{"role": "user", "content": "hi" + " word" * words}],
    }
    if max_tokens is not None:
        raw["max_tokens"] = max_tokens
    raw |= extra
    return RequestContext(ChatCompletionRequest.model_validate(raw), raw, "t")


class CountingCounter:
    """The shared counter, counting what it is asked to count."""

    def __init__(self, counter: Any) -> None:
        self.counter, self.texts = counter, []

    def count(self, text: str) -> TokenCount:
        self.texts.append(text)
        return self.counter.count(text)  # type: ignore[no-any-return]


def check(
    ctx: RequestContext,
    candidates: tuple[str, ...] = ("small", "medium"),
    policy: str = MODELS,
    counted: list[str] | None = None,
) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    skipped: list[tuple[str, str]] = []
    windows = fit(policy)
    assert windows.cache is not None
    spy = windows.cache.counter = CountingCounter(windows.cache.counter)  # type: ignore[assignment]
    kept, _ = windows.check("d", candidates, ctx, skipped, lambda m: True)
    if counted is not None:
        counted += spy.texts  # type: ignore[attr-defined]
    return kept, skipped


# --- units -----------------------------------------------------------------------------


def test_a_short_prompt_fits_every_candidate_and_is_never_counted() -> None:
    counted: list[str] = []
    assert check(context(50), counted=counted) == (("small", "medium"), [])
    assert counted == []  # under every window by its bytes alone


def test_a_prompt_over_a_window_skips_that_model_and_the_context_fallbacks_join() -> None:
    assert check(context(12_000)) == (("medium", "large"), [("small", "context")])
    assert check(context(12_000), policy=MODELS.replace("[large]", "[]")) == (
        ("medium",),
        [("small", "context")],
    )


def test_requested_output_counts_against_the_window_and_the_output_cap() -> None:
    assert check(context(7_000, max_tokens=2_000)) == (("medium", "large"), [("small", "context")])
    # medium writes at most 4096: a request asking for more skips it too; large joins.
    kept, skipped = check(context(10, max_tokens=5_000))
    assert kept == ("small", "large")
    assert skipped == [("medium", "context")]


def test_context_fallbacks_join_only_when_a_candidate_is_too_small() -> None:
    assert check(context(40_000)) == (
        ("large",),
        [("small", "context"), ("medium", "context")],
    )


def test_models_without_a_window_always_fit_and_skip_the_count() -> None:
    counted: list[str] = []
    assert check(context(300_000), ("open",), counted=counted) == (("open",), [])
    assert counted == []


def test_a_conversations_history_is_counted_once_across_its_turns() -> None:
    cache = TokenCache()
    spy = cache.counter = CountingCounter(cache.counter)  # type: ignore[assignment]
    document = "Here is the report:" + " word" * 9_000
    first = context(0)
    first.request.messages[0].content = document
    turn1 = PromptSize.of_request(first, cache).estimate()
    later = context(0)
    later.request.messages[0].content = document
    later.request.messages += [
        ChatMessage(role="assistant", content="Noted."),
        ChatMessage(role="user", content="summarise it"),
    ]
    turn2 = PromptSize.of_request(later, cache).estimate()
    assert turn2 > turn1 > 9_000
    assert sum(text == document for text in spy.texts) == 1  # the document: counted once


def test_nothing_fits_is_a_400_naming_the_largest_window() -> None:
    with pytest.raises(InvalidRequestError) as info:
        check(context(250_000))
    error = info.value
    assert (error.status_code, error.code, error.param) == (
        400,
        "context_length_exceeded",
        "messages",
    )
    assert "the largest context window is 200000 tokens (model 'large')" in error.message
    tokens = int(re.search(r"about (\d+) tokens", error.message)[1])  # type: ignore[index]
    assert 245_000 < tokens < 255_000  # sampled: a prompt this long is estimated


def test_output_asked_beyond_every_cap_says_so() -> None:
    policy = MODELS.replace("context_fallbacks: [large]", "context_fallbacks: []")
    policy = policy.replace(
        "small: {provider: mock,", "small: {provider: mock, max_output_tokens: 1000,"
    )
    with pytest.raises(InvalidRequestError) as info:
        check(context(10, max_tokens=9_000), policy=policy)
    assert info.value.param == "max_tokens"
    assert "the most is 4096 (model 'medium')" in info.value.message


def test_tools_and_message_framing_count_too() -> None:
    tools = [{"type": "function", "function": {"name": "f", "description": "x" + " word" * 2000}}]
    cache = TokenCache()
    bare = PromptSize.of_request(context(100), cache)
    with_tools = PromptSize.of_request(context(100, tools=tools), cache)
    assert 100 < bare.estimate() < 115
    assert with_tools.estimate() > bare.estimate() + 2000


def test_no_window_anywhere_means_no_check_at_all() -> None:
    plain = fit(
        "providers: {mock: {type: mock}}\nmodels: {a: {provider: mock}}\n"
        "decisions: [{name: d, when: true, route: {candidates: [a]}}]\n"
    )
    assert not plain.active


def test_after_an_upstream_refusal_only_larger_windows_are_left() -> None:
    ctx = context(10)
    skipped: list[tuple[str, str]] = []
    policy = (
        MODELS + "  - {name: e, when: false, route: {candidates: [medium, open, small, large]}}\n"
    )
    kept, request = fit(policy).check(
        "e", ("medium", "open", "small", "large"), ctx, skipped, lambda m: True
    )
    assert kept == ("medium", "open", "small", "large")
    assert request is not None
    # medium (32000) said "too long": unknown and smaller windows cannot help.
    assert request.after("medium", ["open", "small", "large"], skipped) == ["large"]
    assert skipped == [("open", "context"), ("small", "context")]


@pytest.mark.parametrize(
    ("status", "detail", "message", "expected"),
    [
        (400, UpstreamDetail(code="context_length_exceeded"), "whatever", True),
        (400, None, "This model's maximum context length is 4096 tokens. However, ...", True),
        (
            400,
            UpstreamDetail(code="invalid_request_error"),
            "prompt is too long: 210000 tokens > 200000 maximum",
            True,
        ),
        (400, None, "input length and `max_tokens` exceed context limit: 1 + 2 > 3", True),
        (400, UpstreamDetail(code="invalid_value"), "temperature must be below 2", False),
        (429, UpstreamDetail(code="context_length_exceeded"), "x", False),
    ],
)
def test_an_upstream_context_length_refusal_is_recognised(
    status: int, detail: UpstreamDetail | None, message: str, expected: bool
) -> None:
    error = UpstreamStatusError(message, upstream_status=status, upstream=detail)
    assert is_context_overflow(error) is expected


def test_config_checks_windows_and_context_fallbacks() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(
            "providers: {mock: {type: mock}}\n"
            "models: {a: {provider: mock, context_window: 100, max_output_tokens: 200}}\n"
            "decisions: [{name: d, when: true, route: {candidates: [a]}}]\n"
        )
    assert "models.a: max_output_tokens (200) is larger than context_window (100)" in str(
        info.value
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(
            "providers: {mock: {type: mock}}\nmodels: {a: {provider: mock}}\n"
            "decisions: [{name: d, when: true, route: {candidates: [a]},"
            " context_fallbacks: [b, a, a]}]\n"
        )
    text = str(info.value)
    assert "decisions[0].context_fallbacks[0]: unknown model 'b'" in text
    assert "decisions[0].context_fallbacks[2]: model 'a' is listed twice" in text


# --- through a real gateway --------------------------------------------------------------

POLICY = """\
providers:
  up: {type: openai, base_url: "${UPSTREAM}/v1"}
  ant: {type: anthropic, base_url: "${UPSTREAM}", api_key: k}
models:
  small-8k: {provider: up, upstream_model: small-echo, context_window: 8192}
  big: {provider: up, upstream_model: big-echo, context_window: 128000}
  huge: {provider: ant, upstream_model: huge-echo, context_window: 1000000}
  tight: {provider: up, upstream_model: fail-context, context_window: 16000}
  tight-twin: {provider: up, upstream_model: tight-twin-echo, context_window: 16000}
  unsized: {provider: up, upstream_model: unsized-echo}
  tight-big: {provider: up, upstream_model: fail-context, context_window: 64000}
resilience:
  retries: {backoff_initial: 0.01, backoff_max: 0.02}
decisions:
  - {name: sized, when: false, route: {candidates: [small-8k, big]}}
  - {name: overflowing, when: false, route: {candidates: [tight, tight-twin, unsized, big]}}
  - {name: all-tight, when: false, route: {candidates: [tight, tight-big]}}
  - {name: small-only, when: false, route: {candidates: [small-8k]}, context_fallbacks: [huge]}
  - {name: default, when: true, route: {candidates: [small-8k]}}
"""
LONG = "Summarise this:" + " word" * 12_000  # about 12k tokens


@pytest.fixture(scope="module")
def gateway(make_gateway: GatewayFactory) -> str:
    return make_gateway(POLICY)


@pytest.fixture
def sdk(gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway + "/v1", api_key="unused", max_retries=0)


def upstream_models(upstream: FakeUpstream, since: int) -> list[str]:
    return [body["model"] for _, _, body in upstream.requests[since:]]


@pytest.mark.parametrize("stream", [False, True])
def test_a_12k_token_prompt_skips_the_8k_model(
    sdk: openai.OpenAI, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture, stream: bool
) -> None:
    before = len(upstream.requests)
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        raw = sdk.chat.completions.with_raw_response.create(
            model="sized", messages=[{"role": "user", "content": LONG}], stream=stream
        )
        raw.parse()
        line = log_line(caplog, raw.headers["x-router-request-id"])
    assert raw.headers["x-router-model"] == "big"
    assert upstream_models(upstream, before) == ["big-echo"]  # never sent to the 8k model
    assert line["skipped"] == [["small-8k", "context"]]
    assert line["attempts"] == 1


def test_a_short_prompt_still_goes_to_the_first_candidate(
    sdk: openai.OpenAI, upstream: FakeUpstream
) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="sized", messages=[{"role": "user", "content": "hello"}]
    )
    assert raw.headers["x-router-model"] == "small-8k"


def test_an_upstream_context_length_400_falls_back_to_a_larger_window(
    sdk: openai.OpenAI, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    before = len(upstream.requests)
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        raw = sdk.chat.completions.with_raw_response.create(
            model="overflowing", messages=[{"role": "user", "content": "hello there"}]
        )
        line = log_line(caplog, raw.headers["x-router-request-id"])
    assert raw.parse().choices[0].message.content == "echo: hello there"
    assert raw.headers["x-router-model"] == "big"
    # tight-twin's window is no larger and unsized's unknown: neither is called.
    assert upstream_models(upstream, before) == ["fail-context", "big-echo"]
    assert line["skipped"] == [["tight-twin", "context"], ["unsized", "context"]]


def test_every_upstream_refusing_it_is_one_400_naming_the_largest_window(
    sdk: openai.OpenAI, upstream: FakeUpstream
) -> None:
    before = len(upstream.requests)
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(
            model="all-tight", messages=[{"role": "user", "content": "hello"}]
        )
    assert info.value.code == "context_length_exceeded"
    assert "the largest context window is 64000 tokens (model 'tight-big')" in str(info.value.body)
    assert upstream_models(upstream, before) == ["fail-context", "fail-context"]


def test_context_fallbacks_take_what_the_candidates_cannot(
    sdk: openai.OpenAI, upstream: FakeUpstream
) -> None:
    before = len(upstream.requests)
    raw = sdk.chat.completions.with_raw_response.create(
        model="small-only", messages=[{"role": "user", "content": LONG}]
    )
    assert raw.headers["x-router-model"] == "huge"  # an Anthropic model: translated
    assert upstream_models(upstream, before) == ["huge-echo"]


@pytest.mark.parametrize("stream", [False, True])
def test_nothing_fits_is_openais_context_length_exceeded(
    sdk: openai.OpenAI, upstream: FakeUpstream, stream: bool
) -> None:
    before = len(upstream.requests)
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(
            model="default", messages=[{"role": "user", "content": LONG}], stream=stream
        )
    error = info.value
    assert (error.code, error.param, error.type) == (
        "context_length_exceeded",
        "messages",
        "invalid_request_error",
    )
    assert "the largest context window is 8192 tokens (model 'small-8k')" in str(error.body)
    assert upstream_models(upstream, before) == []


def test_the_messages_surface_gets_it_in_anthropics_shape(gateway: str) -> None:
    claude = anthropic.Anthropic(base_url=gateway, api_key="unused", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.messages.create(
            model="default", max_tokens=100, messages=[{"role": "user", "content": LONG}]
        )
    assert "largest context window is 8192 tokens" in str(info.value)


def test_the_dry_run_shows_what_the_windows_do(gateway: str, upstream: FakeUpstream) -> None:
    """``POST /v1/route`` calls no model, but says which candidates a prompt is too long
    for, the order the rest would be tried in, or the 400 the request would get."""
    before = len(upstream.requests)

    def dry(model: str, text: str) -> dict[str, Any]:
        body = {"model": model, "messages": [{"role": "user", "content": text}]}
        answer = httpx.post(gateway + "/v1/route", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        shown: dict[str, Any] = answer.json()["context"]
        return shown

    long = dry("sized", LONG)
    assert long["prompt_tokens"] > 12_000
    assert (long["passed_over"], long["order"]) == (["small-8k"], ["big"])
    assert "error" not in long
    short = dry("sized", "hello")
    assert (short["passed_over"], short["order"]) == ([], ["small-8k", "big"])
    fallback = dry("small-only", LONG)
    assert (fallback["passed_over"], fallback["order"]) == (["small-8k"], ["huge"])
    nothing = dry("default", LONG)
    assert nothing["order"] == []
    assert "too long for every candidate" in nothing["error"]
    assert len(upstream.requests) == before  # a dry run calls nobody
