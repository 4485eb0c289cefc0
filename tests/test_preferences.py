"""Per-request preferences (issue 16 item 4): a caller narrows and re-ranks the decision's
candidates with body fields or ``x-router-*`` headers, within what the policy allows its
key. Units first, then a real gateway in front of the real fake upstream, driven by the
official SDKs."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest

from router_proxy.config.errors import ConfigError
from router_proxy.config.load import load_config_text
from router_proxy.context import RequestContext
from router_proxy.engine.auth import ANONYMOUS, client_id
from router_proxy.engine.preferences import PreferencePolicies
from router_proxy.errors import InvalidRequestError
from router_proxy.pipeline import Pipeline
from router_proxy.protocol import ChatCompletionRequest
from router_proxy.resilience.latency_tracker import LatencyTracker
from tests.conftest import GatewayFactory
from tests.support.upstream import FakeUpstream

UNIT_POLICY = """\
server: {api_keys: [team-a, team-b]}
providers: {mock: {type: mock}}
models:
  cheap: {provider: mock, cost: {input_per_mtok: 0.1, output_per_mtok: 0.2}}
  mid: {provider: mock, cost: {input_per_mtok: 1, output_per_mtok: 2}}
  pricey: {provider: mock, cost: {input_per_mtok: 10, output_per_mtok: 30}}
preferences:
  cost_weight: {max: 0.5}
  per_client:
    - {key: team-b, allow: [excluded_models]}
decisions:
  - {name: d, when: true, route: {candidates: [pricey, mid, cheap]}}
"""


def setup(
    body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> tuple[PreferencePolicies, RequestContext, Pipeline]:
    config, _ = load_config_text(UNIT_POLICY)
    raw: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    raw |= body or {}
    ctx = RequestContext(ChatCompletionRequest.model_validate(raw), raw, "t", headers or {})
    latency = LatencyTracker()
    return (
        PreferencePolicies(config.preferences, config.models, latency),
        ctx,
        Pipeline.build(config),
    )


async def route(
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    client: str = ANONYMOUS,
) -> tuple[tuple[str, ...], dict[str, Any], RequestContext]:
    policies, ctx, pipeline = setup(body, headers)
    ctx.preferences = policies.read(ctx, client)
    plan = policies.apply(await pipeline.route(ctx), ctx)
    return plan.candidates, plan.to_dict(), ctx


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_no_preference_changes_nothing() -> None:
    candidates, shown, _ = await route()
    assert candidates == ("pricey", "mid", "cheap")
    assert "preferences" not in shown


async def test_allowed_and_excluded_models_narrow_the_candidates_in_their_order() -> None:
    candidates, shown, ctx = await route({"allowed_models": ["cheap", "pricey"]})
    assert candidates == ("pricey", "cheap")
    assert shown["preferences"]["removed"] == {"mid": "not in allowed_models"}
    assert "allowed_models" not in ctx.raw_body  # never sent upstream
    candidates, _, _ = await route(headers={"x-router-excluded-models": "pricey, mid"})
    assert candidates == ("cheap",)


async def test_a_header_wins_over_the_body_field() -> None:
    candidates, _, _ = await route(
        {"excluded_models": ["cheap"]}, {"x-router-excluded-models": "pricey"}
    )
    assert candidates == ("mid", "cheap")


async def test_a_price_tier_and_a_cost_preference() -> None:
    candidates, _, _ = await route({"max_cost_per_1k": 0.002})  # $2 per Mtok at most
    assert candidates == ("mid", "cheap")
    candidates, _, _ = await route(headers={"x-router-prefer": "cost"})
    assert candidates == ("cheap", "mid", "pricey")


async def test_a_latency_preference_puts_the_fastest_observed_first() -> None:
    policies, ctx, pipeline = setup(headers={"x-router-prefer": "latency"})
    policies.latency.observe("cheap", 0.9)
    policies.latency.observe("mid", 0.1)
    ctx.preferences = policies.read(ctx, ANONYMOUS)
    plan = policies.apply(await pipeline.route(ctx), ctx)
    assert plan.candidates == ("mid", "cheap", "pricey")  # pricey: never measured, last


async def test_nothing_left_is_a_400_naming_the_preference() -> None:
    with pytest.raises(InvalidRequestError) as info:
        await route({"excluded_models": ["pricey", "mid", "cheap"]})
    assert (info.value.param, info.value.code) == ("excluded_models", "no_candidate_left")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"allowed_models": ["gpt-9"]}, "allowed_models"),
        ({"allowed_models": [1, 2]}, "allowed_models"),
        ({"cost_weight": -1}, "cost_weight"),
        ({"cost_weight": "lots"}, "cost_weight"),
        ({"max_cost_per_1k": 0}, "max_cost_per_1k"),
        ({"prefer": "vibes"}, "prefer"),
    ],
)
async def test_a_bad_preference_is_a_400_naming_it(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await route(body)
    assert info.value.param == param


async def test_the_policy_holds_values_within_its_bounds_and_says_so() -> None:
    _, shown, ctx = await route({"cost_weight": 2})
    assert ctx.preferences is not None
    assert ctx.preferences.cost_weight == 0.5
    assert shown["preferences"]["asked"]["capped"] == ["cost_weight 2 -> 0.5 (the policy's bounds)"]
    assert shown["preferences"]["cost_weight_applies"] is False  # a static decision


async def test_a_client_key_may_be_refused_a_preference() -> None:
    team_b = client_id("team-b")
    candidates, _, _ = await route({"excluded_models": ["pricey"]}, client=team_b)
    assert candidates == ("mid", "cheap")
    with pytest.raises(InvalidRequestError) as info:
        await route(headers={"x-router-prefer": "cost"}, client=team_b)
    assert (info.value.param, info.value.code) == ("prefer", "preference_not_allowed")
    await route(headers={"x-router-prefer": "cost"}, client=client_id("team-a"))  # allowed


def test_a_per_client_policy_must_name_a_known_key() -> None:
    with pytest.raises(
        ConfigError, match=r"preferences.per_client\[0\].key: not one of server.api_keys"
    ):
        load_config_text(UNIT_POLICY.replace("key: team-b", "key: team-c"))


# --- through a real gateway --------------------------------------------------------------

KEY_A, KEY_B = "sk-team-a-123", "sk-team-b-456"
POLICY = f"""\
server: {{api_keys: [{KEY_A}, {KEY_B}]}}
providers:
  up: {{type: openai, base_url: "${{UPSTREAM}}/v1"}}
  ant: {{type: anthropic, base_url: "${{UPSTREAM}}", api_key: k}}
models:
  big: {{provider: up, upstream_model: big-echo, cost: {{input_per_mtok: 5, output_per_mtok: 15}}}}
  small: {{provider: up, upstream_model: small-echo, cost: {{input_per_mtok: 0.1, output_per_mtok: 0.4}}}}
  slowpoke: {{provider: up, upstream_model: slow}}
  broken: {{provider: up, upstream_model: fail-500, fallbacks: [big]}}
  claude: {{provider: ant, upstream_model: claude-echo}}
preferences:
  per_client:
    - {{key: {KEY_B}, allow: []}}
decisions:
  - {{name: fallbacky, when: false, route: {{candidates: [broken, small]}}}}
  - {{name: speedy, when: false, route: {{candidates: [slowpoke, small]}}}}
  - {{name: default, when: true, route: {{candidates: [big, small, claude]}}}}
"""
HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def gateway(make_gateway: GatewayFactory) -> str:
    return make_gateway(POLICY)


@pytest.fixture
def sdk(gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway + "/v1", api_key=KEY_A, max_retries=0)


def upstream_bodies(upstream: FakeUpstream, since: int) -> list[Any]:
    return [body for _, _, body in upstream.requests[since:]]


def test_body_fields_narrow_and_never_reach_the_upstream(
    sdk: openai.OpenAI, upstream: FakeUpstream
) -> None:
    before = len(upstream.requests)
    raw = sdk.chat.completions.with_raw_response.create(
        model="auto",
        messages=HELLO,
        extra_body={"allowed_models": ["small", "claude"], "max_cost_per_1k": 0.001},
    )
    assert raw.headers["x-router-model"] == "small"
    sent = upstream_bodies(upstream, before)
    assert [b["model"] for b in sent] == ["small-echo"]
    assert "allowed_models" not in sent[0]
    assert "max_cost_per_1k" not in sent[0]


def test_a_header_excludes_and_the_models_fallbacks_respect_it(
    sdk: openai.OpenAI, upstream: FakeUpstream
) -> None:
    before = len(upstream.requests)
    raw = sdk.chat.completions.with_raw_response.create(
        model="fallbacky", messages=HELLO, extra_headers={"x-router-excluded-models": "big"}
    )
    assert raw.headers["x-router-model"] == "small"
    # broken fails; its own fallback (big) is excluded, so the next candidate answers.
    assert [b["model"] for b in upstream_bodies(upstream, before)] == ["fail-500", "small-echo"]


def test_a_latency_preference_takes_the_fastest_observed_candidate(sdk: openai.OpenAI) -> None:
    for model in ("slowpoke", "small"):  # one call each: their latency is observed
        sdk.chat.completions.create(model=model, messages=HELLO)
    assert (
        sdk.chat.completions.with_raw_response.create(model="speedy", messages=HELLO).headers[
            "x-router-model"
        ]
        == "slowpoke"
    )
    raw = sdk.chat.completions.with_raw_response.create(
        model="speedy", messages=HELLO, extra_headers={"x-router-prefer": "latency"}
    )
    assert raw.headers["x-router-model"] == "small"


def test_a_key_the_policy_forbids_preferences_is_refused(gateway: str) -> None:
    team_b = openai.OpenAI(base_url=gateway + "/v1", api_key=KEY_B, max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        team_b.chat.completions.create(
            model="auto", messages=HELLO, extra_headers={"x-router-allowed-models": "small"}
        )
    assert (info.value.code, info.value.param) == ("preference_not_allowed", "allowed_models")
    assert team_b.chat.completions.create(model="auto", messages=HELLO).model == "big-echo"


def test_the_dry_run_shows_what_was_asked_and_what_it_did(gateway: str) -> None:
    answer = httpx.post(
        gateway + "/v1/route",
        json={"model": "auto", "messages": HELLO, "excluded_models": ["big"]},
        headers={"authorization": f"Bearer {KEY_A}", "x-router-prefer": "cost"},
    )
    plan = answer.json()
    assert plan["candidates"] == ["claude", "small"]  # claude has no price: free
    assert plan["preferences"]["asked"] == {"excluded_models": ["big"], "prefer": "cost"}
    assert plan["preferences"]["removed"] == {"big": "in excluded_models"}


def test_the_messages_surface_takes_them_too_and_strips_its_native_body(
    gateway: str, upstream: FakeUpstream
) -> None:
    claude = anthropic.Anthropic(base_url=gateway, api_key=KEY_A, max_retries=0)
    before = len(upstream.requests)
    # The fake Anthropic upstream refuses unknown fields, as the real one does.
    raw = claude.messages.with_raw_response.create(
        model="auto",
        max_tokens=50,
        messages=HELLO,
        extra_body={"allowed_models": ["claude"]},
    )
    assert raw.headers["x-router-model"] == "claude"
    assert raw.parse().content[0].text == "echo: hello there"
    sent = upstream_bodies(upstream, before)
    assert "allowed_models" not in sent[0]


def test_explain_shows_them(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from router_proxy.cli import main

    policy = tmp_path / "policy.yaml"
    policy.write_text(UNIT_POLICY)
    code = main(
        ["explain", "--config", str(policy), "--header", "x-router-excluded-models: pricey", "hi"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "candidates: mid, cheap" in out
    assert '"removed": {"pricey": "in excluded_models"}' in out
