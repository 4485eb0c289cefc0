"""The response cache end to end: the official OpenAI SDK -> a gateway on a real port ->
the fake upstream (a real HTTP server that counts what reaches it)."""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from router_proxy.observability.logging import ACCESS_LOGGER
from tests.conftest import GatewayFactory
from tests.support.logs import log_line
from tests.support.upstream import FakeUpstream

KEY_A, KEY_B = "key-tenant-a", "key-tenant-b"
ADMIN = {"authorization": "Bearer admin-key"}

CACHE_POLICY = """\
server: {api_keys: [key-tenant-a, key-tenant-b], admin_keys: [admin-key]}
providers:
  up: {type: openai, base_url: "${UPSTREAM}/v1", api_key: "${OPENAI_KEY}"}
  mock: {type: mock}
models:
  mocked: {provider: mock}
  echo: {provider: up, upstream_model: echo, cost: {input_per_mtok: 1000, output_per_mtok: 2000}}
  broken: {provider: up, upstream_model: fail-500}
  cut: {provider: up, upstream_model: cut-stream}
  no-finish: {provider: up, upstream_model: no-finish}
decisions:
  - {name: errors, when: false, route: {candidates: [broken]}, cache: {mode: exact}}
  - {name: cuts, when: false, route: {candidates: [cut]}, cache: {mode: exact}}
  - {name: unfinished, when: false, route: {candidates: [no-finish]}, cache: {mode: exact}}
  - name: per-user
    when: false
    route: {candidates: [echo]}
    cache: {mode: exact, scope: "header:x-end-user"}
  - name: sampled
    when: false
    route: {candidates: [echo]}
    cache: {mode: exact, temperature: any, multiple_choices: true}
  - {name: uncached, when: false, route: {candidates: [echo]}}
  - {name: other-apis, when: false, route: {candidates: [mocked]}, cache: {mode: exact}}
  - {name: support, when: false, route: {candidates: [echo]}, cache: {mode: semantic}}
  - {name: faq, when: true, route: {candidates: [echo]}, cache: {mode: exact, ttl: 600}}
"""
_counter = itertools.count()


def fresh(text: str = "what are your opening hours") -> str:
    """A prompt no other test asked (the cache outlives each test)."""
    return f"{text} #{next(_counter)}"


@pytest.fixture(scope="module")
def cache_url(make_gateway: GatewayFactory) -> str:
    return make_gateway(CACHE_POLICY)


@pytest.fixture
def sdk(cache_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=cache_url + "/v1", api_key=KEY_A, max_retries=0) as client:
        yield client


def other_tenant(cache_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=cache_url + "/v1", api_key=KEY_B, max_retries=0)


class Calls:
    """How many requests reached the upstream since it was made."""

    def __init__(self, upstream: FakeUpstream) -> None:
        self.upstream = upstream
        self.start = len(upstream.requests)

    @property
    def count(self) -> int:
        return len(self.upstream.requests) - self.start


def ask(client: openai.OpenAI, prompt: str, **params: Any) -> tuple[str, str | None]:
    """(the reply's text, the x-router-cache header)."""
    params.setdefault("model", "auto")
    messages = params.pop("messages", [{"role": "user", "content": prompt}])
    raw = client.chat.completions.with_raw_response.create(messages=messages, **params)
    content = raw.parse().choices[0].message.content
    return content or "", raw.headers.get("x-router-cache")


def test_second_identical_request_is_a_hit_without_an_upstream_call(
    sdk: openai.OpenAI, upstream: FakeUpstream
) -> None:
    prompt = fresh()
    calls = Calls(upstream)
    first, outcome = ask(sdk, prompt, temperature=0)
    assert (first, outcome, calls.count) == (f"echo: {prompt}", "miss", 1)
    raw = sdk.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": prompt}], temperature=0
    )
    assert raw.headers["x-router-cache"] == "hit"
    assert raw.headers["x-router-decision"] == "faq"
    assert raw.headers["x-router-model"] == "echo"
    completion = raw.parse()
    assert completion.choices[0].message.content == first
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 10
    assert calls.count == 1
    # The decision's name routes to the same decision: `model` is not part of the key.
    assert ask(sdk, prompt, model="faq", temperature=0)[1] == "hit"


def test_tenants_never_share_answers(
    sdk: openai.OpenAI, cache_url: str, upstream: FakeUpstream
) -> None:
    prompt = fresh("my account balance")
    calls = Calls(upstream)
    assert ask(sdk, prompt)[1] == "miss"
    with other_tenant(cache_url) as b:
        assert ask(b, prompt)[1] == "miss"
        assert ask(b, prompt)[1] == "hit"
    assert ask(sdk, prompt)[1] == "hit"
    assert calls.count == 2


def test_a_header_scope_keeps_end_users_apart_and_needs_the_header(
    sdk: openai.OpenAI, upstream: FakeUpstream
) -> None:
    prompt = fresh("my orders")
    ann = {"x-end-user": "ann"}
    calls = Calls(upstream)
    assert ask(sdk, prompt, model="per-user", extra_headers=ann)[1] == "miss"
    assert ask(sdk, prompt, model="per-user", extra_headers=ann)[1] == "hit"
    assert ask(sdk, prompt, model="per-user", extra_headers={"x-end-user": "bob"})[1] == "miss"
    assert ask(sdk, prompt, model="per-user")[1] == "bypass"  # no header: no scope
    assert calls.count == 3


@pytest.mark.parametrize(
    "change",
    [
        {"messages": [{"role": "system", "content": "Answer in French."}]},
        {"tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]},
        {"max_tokens": 3},
        {"response_format": {"type": "json_object"}},
        {"stop": ["\n"]},
        {"seed": 7},
        {"temperature": 0},
        {"tool_choice": "none", "tools": [{"type": "function", "function": {"name": "f"}}]},
    ],
    ids=[
        "system-prompt",
        "tools",
        "max-tokens",
        "response-format",
        "stop",
        "seed",
        "temperature",
        "tool-choice",
    ],
)
def test_anything_that_shapes_the_answer_changes_the_key(
    sdk: openai.OpenAI, upstream: FakeUpstream, change: dict[str, Any]
) -> None:
    prompt = fresh("summarise the refund policy")
    user = {"role": "user", "content": prompt}
    assert ask(sdk, prompt)[1] == "miss"
    assert ask(sdk, prompt)[1] == "hit"
    params = dict(change)
    params["messages"] = [*params.get("messages", []), user]
    calls = Calls(upstream)
    assert ask(sdk, prompt, **params)[1] == "miss"
    assert ask(sdk, prompt, **params)[1] == "hit"
    assert calls.count == 1


def test_sampled_and_multiple_choice_requests_bypass_unless_the_policy_allows(
    sdk: openai.OpenAI, upstream: FakeUpstream
) -> None:
    prompt = fresh("tell me a joke")
    calls = Calls(upstream)
    assert ask(sdk, prompt, temperature=0.7)[1] == "bypass"
    assert ask(sdk, prompt, temperature=0.7)[1] == "bypass"
    assert ask(sdk, prompt, n=2)[1] == "bypass"
    assert calls.count == 3
    assert ask(sdk, prompt, model="sampled", temperature=0.7, n=2)[1] == "miss"
    assert ask(sdk, prompt, model="sampled", temperature=0.7, n=2)[1] == "hit"
    # A decision without `cache` says nothing about it.
    raw = sdk.chat.completions.with_raw_response.create(
        model="uncached", messages=[{"role": "user", "content": prompt}]
    )
    assert "x-router-cache" not in raw.headers


def test_errors_are_never_cached(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    prompt = fresh()
    calls = Calls(upstream)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as caught:
            sdk.chat.completions.create(
                model="errors", messages=[{"role": "user", "content": prompt}]
            )
        assert caught.value.response.headers["x-router-cache"] == "miss"
    assert calls.count == 2  # each request went upstream


@pytest.mark.parametrize("decision", ["cuts", "unfinished"])
def test_streams_that_did_not_end_normally_are_never_cached(
    sdk: openai.OpenAI, upstream: FakeUpstream, decision: str
) -> None:
    prompt = fresh()
    calls = Calls(upstream)
    for _ in range(2):
        stream = sdk.chat.completions.create(
            model=decision, messages=[{"role": "user", "content": prompt}], stream=True
        )
        with pytest.raises(openai.APIError):
            for _chunk in stream:
                pass
    assert calls.count == 2


@pytest.mark.parametrize("usage", [True, False])
def test_a_stream_hit_replays_a_valid_stream(
    sdk: openai.OpenAI, upstream: FakeUpstream, usage: bool
) -> None:
    prompt = fresh("explain the warranty terms in a few words")
    options = {"include_usage": True} if usage else None

    def stream() -> tuple[str, Any, str | None, str | None]:
        raw = sdk.chat.completions.with_raw_response.create(
            model="auto",
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            stream_options=options or openai.omit,
        )
        chunks = list(raw.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = next(
            c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
        )
        return text, chunks[-1].usage, finish, raw.headers.get("x-router-cache")

    calls = Calls(upstream)
    text, first_usage, finish, outcome = stream()
    assert (text, finish, outcome) == (f"echo: {prompt}", "stop", "miss")
    replayed = stream()
    assert replayed == (text, first_usage, "stop", "hit")
    assert (first_usage is not None) == usage
    assert calls.count == 1
    # A whole answer to the same request is stored apart from the stream.
    assert ask(sdk, prompt)[1] == "miss"


def test_no_cache_and_no_store_are_honoured(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    prompt = fresh()
    calls = Calls(upstream)
    assert ask(sdk, prompt, extra_headers={"cache-control": "no-store"})[1] == "miss"
    assert ask(sdk, prompt)[1] == "miss"  # the first answer was not kept
    assert ask(sdk, prompt)[1] == "hit"
    assert ask(sdk, prompt, extra_headers={"cache-control": "no-cache"})[1] == "miss"
    assert ask(sdk, prompt, extra_headers={"x-router-cache": "off"})[1] == "bypass"
    assert calls.count == 4


def test_responses_api_hits_are_rendered_for_it(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    prompt = fresh()
    calls = Calls(upstream)
    outcomes = []
    for _ in range(2):
        raw = sdk.responses.with_raw_response.create(model="auto", input=prompt)
        assert raw.parse().output_text == f"echo: {prompt}"
        outcomes.append(raw.headers["x-router-cache"])
    assert outcomes == ["miss", "hit"]
    assert calls.count == 1


def metric(base_url: str, name: str) -> float:
    for line in httpx.get(base_url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_metrics_count_outcomes_and_dollars_saved(sdk: openai.OpenAI, cache_url: str) -> None:
    hits = metric(cache_url, 'router_cache_hits_total{decision="faq"}')
    saved = metric(cache_url, 'router_cache_saved_dollars_total{decision="faq"}')
    prompt = fresh()
    ask(sdk, prompt)
    ask(sdk, prompt)
    assert metric(cache_url, 'router_cache_hits_total{decision="faq"}') == hits + 1
    # 10 prompt tokens at $1000/M and 6 completion tokens at $2000/M
    words = len(f"echo: {prompt}".split())
    expected = (10 * 1000 + words * 2000) / 1e6
    assert metric(cache_url, 'router_cache_saved_dollars_total{decision="faq"}') == pytest.approx(
        saved + expected
    )
    assert metric(cache_url, "router_cache_bytes") > 0


def test_admin_purges_a_tenant(sdk: openai.OpenAI, cache_url: str) -> None:
    prompt = fresh()
    ask(sdk, prompt)
    assert ask(sdk, prompt)[1] == "hit"
    tenant = hashlib.sha256(KEY_B.encode()).hexdigest()[:16]
    purge = httpx.post(cache_url + "/admin/cache/purge", json={"tenant": tenant}, headers=ADMIN)
    assert purge.status_code == 200
    assert ask(sdk, prompt)[1] == "hit"  # another tenant's purge leaves A's answers
    tenant = hashlib.sha256(KEY_A.encode()).hexdigest()[:16]
    purge = httpx.post(
        cache_url + "/admin/cache/purge", json={"tenant": tenant, "decision": "faq"}, headers=ADMIN
    )
    assert purge.status_code == 200
    assert purge.json()["purged"] >= 1
    assert ask(sdk, prompt)[1] == "miss"
    refused = httpx.post(cache_url + "/admin/cache/purge", json={}, headers=ADMIN)
    assert refused.status_code == 400
    unauthorised = httpx.post(cache_url + "/admin/cache/purge", json={"all": True})
    assert unauthorised.status_code == 401


def test_semantic_paraphrase_hits_and_near_misses_miss(
    sdk: openai.OpenAI, cache_url: str, upstream: FakeUpstream
) -> None:
    calls = Calls(upstream)
    asked = "How do I reset my password on the mobile app?"
    answer, outcome = ask(sdk, asked, model="support")
    assert (answer, outcome) == (f"echo: {asked}", "miss")
    for paraphrase in (
        "how can i reset my password on the mobile app",
        "What's the way to reset my password on the mobile app?",
        "Please tell me how to reset my password on the mobile app.",
    ):
        assert ask(sdk, paraphrase, model="support") == (answer, "hit"), paraphrase
    assert calls.count == 1
    for near_miss in (
        "How do I not reset my password on the mobile app?",  # negation
        "How do I reset my password on the desktop app?",  # another entity
        "How do I reset my PIN on the mobile app?",
        "How do I reset my password on the 2 mobile apps?",  # a number
    ):
        assert ask(sdk, near_miss, model="support") == (f"echo: {near_miss}", "miss"), near_miss
    assert calls.count == 5
    # Another tenant, or the same question after another system prompt: another context.
    with other_tenant(cache_url) as b:
        assert ask(b, "how can i reset my password on the mobile app", model="support")[1] == "miss"
    system = [{"role": "system", "content": "You are terse."}]
    messages = [
        *system,
        {"role": "user", "content": "how can i reset my password on the mobile app"},
    ]
    assert ask(sdk, "", model="support", messages=messages)[1] == "miss"
    assert calls.count == 7


def test_semantic_stream_hit_replays_the_stored_stream(sdk: openai.OpenAI) -> None:
    def stream(prompt: str) -> tuple[str, str]:
        raw = sdk.chat.completions.with_raw_response.create(
            model="support", messages=[{"role": "user", "content": prompt}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        return text, raw.headers["x-router-cache"]

    assert stream("Where can I see my invoices?") == ("echo: Where can I see my invoices?", "miss")
    assert stream("where can i see my invoices") == ("echo: Where can I see my invoices?", "hit")


def test_messages_api_hits_are_rendered_for_it(cache_url: str, upstream: FakeUpstream) -> None:
    import anthropic

    calls = Calls(upstream)
    prompt = fresh()
    with anthropic.Anthropic(base_url=cache_url, api_key=KEY_A, max_retries=0) as client:
        outcomes = []
        for _ in range(2):
            raw = client.messages.with_raw_response.create(
                model="auto", max_tokens=50, messages=[{"role": "user", "content": prompt}]
            )
            message = raw.parse()
            assert message.content[0].type == "text"
            assert message.content[0].text == f"echo: {prompt}"
            outcomes.append(raw.headers["x-router-cache"])
        # Streamed on the Messages API: replayed through the same translation.
        for expected in ("miss", "hit"):
            with client.messages.stream(
                model="auto", max_tokens=50, messages=[{"role": "user", "content": prompt}]
            ) as stream:
                assert "".join(stream.text_stream) == f"echo: {prompt}"
                assert stream.response.headers["x-router-cache"] == expected
    assert outcomes == ["miss", "hit"]
    assert calls.count == 2


def test_the_log_line_says_hit_with_no_cost_and_the_dollars_saved(
    sdk: openai.OpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    prompt = fresh()
    first = sdk.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": prompt}]
    )
    miss = log_line(caplog, first.headers["x-request-id"])
    second = sdk.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": prompt}]
    )
    hit = log_line(caplog, second.headers["x-request-id"])
    assert (miss["cache"], hit["cache"]) == ("miss", "hit")
    assert miss["cost_usd"] > 0
    assert miss["saved_usd"] is None
    assert hit["cost_usd"] == 0
    assert hit["saved_usd"] == pytest.approx(miss["cost_usd"])
    assert hit["upstream_ms"] is None
    assert hit["attempts"] is None
    assert (hit["model"], hit["prompt_tokens"]) == ("echo", 10)


def test_embeddings_and_text_completions_are_cached_too(sdk: openai.OpenAI) -> None:
    text = fresh("a sentence to embed")
    outcomes, vectors = [], []
    for _ in range(2):
        raw = sdk.embeddings.with_raw_response.create(model="other-apis", input=[text, "b"])
        vectors.append([e.embedding for e in raw.parse().data])
        outcomes.append(raw.headers["x-router-cache"])
    assert outcomes == ["miss", "hit"]
    assert vectors[0] == vectors[1]
    outcomes, texts = [], []
    for _ in range(2):
        raw = sdk.completions.with_raw_response.create(model="other-apis", prompt=text)
        texts.append(raw.parse().choices[0].text)
        outcomes.append(raw.headers["x-router-cache"])
    assert outcomes == ["miss", "hit"]
    assert texts[0] == texts[1]
