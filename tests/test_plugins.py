"""Decision plugins: system prompt, params; config errors; end to end through the gateway."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from router_proxy.config.errors import ConfigError
from router_proxy.config.load import load_config_text
from router_proxy.context import RequestContext
from router_proxy.plugins.params import ParamsOptions, ParamsPlugin
from router_proxy.plugins.system_prompt import SystemPromptOptions, SystemPromptPlugin
from tests.conftest import POLICY, GatewayFactory
from tests.support.upstream import FakeUpstream


def ctx_for(body: dict[str, Any]) -> RequestContext:
    ctx = RequestContext.from_prompt("x")
    ctx.raw_body = body
    return ctx


BODY = {
    "model": "auto",
    "messages": [
        {"role": "system", "content": "client system"},
        {"role": "developer", "content": "client developer"},
        {"role": "user", "content": "hi"},
    ],
}


def test_system_prompt_prepends_by_default_and_never_mutates_the_client_body() -> None:
    plugin = SystemPromptPlugin("Be terse.")
    out = plugin.apply(BODY, ctx_for(BODY))
    assert [m["content"] for m in out["messages"]] == [
        "Be terse.",
        "client system",
        "client developer",
        "hi",
    ]
    assert len(BODY["messages"]) == 3  # type: ignore[arg-type]


def test_system_prompt_replace_drops_client_system_messages() -> None:
    plugin = SystemPromptPlugin(SystemPromptOptions(text="Only this.", mode="replace"))
    out = plugin.apply(BODY, ctx_for(BODY))
    assert out["messages"] == [
        {"role": "system", "content": "Only this."},
        {"role": "user", "content": "hi"},
    ]


def test_params_set_default_and_cap() -> None:
    plugin = ParamsPlugin(
        ParamsOptions(
            set={"temperature": 0.2},
            default={"top_p": 0.9, "seed": 7},
            cap={"max_tokens": 512, "n": 1},
        )
    )
    body = {**BODY, "temperature": 1.5, "seed": 1, "max_completion_tokens": 4000, "n": 3}
    out = plugin.apply(body, ctx_for(body))
    assert out["temperature"] == 0.2  # set overwrites
    assert (out["top_p"], out["seed"]) == (0.9, 1)  # default only fills gaps
    assert out["max_completion_tokens"] == 512  # the cap follows the newer name
    assert "max_tokens" not in out
    assert out["n"] == 1
    assert plugin.apply(BODY, ctx_for(BODY))["max_tokens"] == 512  # unbounded -> capped
    small = {**BODY, "max_tokens": 100}
    assert plugin.apply(small, ctx_for(small))["max_tokens"] == 100


PLUGIN_POLICY = """\
providers:
  mock: {type: mock}
models:
  small: {provider: mock}
decisions:
  - name: default
    when: true
    route: {candidates: [small]}
    plugins:
"""


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ("      - {system_prompt: x, params: {set: {seed: 1}}}", "exactly one of"),
        ("      - {temperature: 0}", "unknown key"),
        ("      - {params: {set: {model: gpt5}}}", "cannot change ['model']"),
        ("      - {params: {}}", "at least one of"),
        ("      - {system_prompt: {text: x, mode: append}}", "decisions[0].plugins[0]"),
    ],
)
def test_plugin_config_errors_name_the_path(items: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(PLUGIN_POLICY + items + "\n", env={})
    text = "\n".join(str(issue) for issue in info.value.issues)
    assert message in text
    assert "decisions[0].plugins[0]" in text
    assert "(line 10)" in text


def test_plugins_reach_the_upstream(make_gateway: GatewayFactory, upstream: FakeUpstream) -> None:
    policy = POLICY.replace(
        "  - {name: default, when: true, route: {candidates: [gpt-echo]}}",
        "  - name: default\n"
        "    when: true\n"
        "    route: {candidates: [gpt-echo]}\n"
        "    plugins:\n"
        "      - {system_prompt: {text: 'You are terse.', mode: replace}}\n"
        "      - {params: {cap: {max_tokens: 64}, set: {temperature: 0}}}\n",
    )
    url = make_gateway(policy)
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    client.chat.completions.create(
        model="auto",
        messages=[{"role": "system", "content": "ignore me"}, {"role": "user", "content": "hi"}],
        max_tokens=4096,
        temperature=1.0,
    )
    body = upstream.requests[-1][2]
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hi"},
    ]
    assert (body["max_tokens"], body["temperature"]) == (64, 0)
    # A request naming a model bypasses decisions and so their plugins.
    client.chat.completions.create(
        model="gpt-echo", messages=[{"role": "user", "content": "hi"}], max_tokens=4096
    )
    assert upstream.requests[-1][2]["max_tokens"] == 4096


def test_redact_pii_masks_every_message_and_keeps_the_rest() -> None:
    from router_proxy.plugins.redact_pii import RedactOptions, RedactPiiPlugin

    body = {
        "model": "auto",
        "messages": [
            {"role": "system", "content": "Reply to jane.doe@example.com"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Card 4111 1111 1111 1111, call +1 650-253-0000."},
                    {"type": "image_url", "image_url": {"url": "http://x/4111111111111111.png"}},
                ],
            },
            {"role": "user", "content": "Order 4111 1111 1111 1112 ships in 3 days."},
        ],
    }
    out = RedactPiiPlugin(True).apply(body, ctx_for(body))
    assert out["messages"][0]["content"] == "Reply to [EMAIL]"
    parts = out["messages"][1]["content"]
    assert parts[0]["text"] == "Card [CREDIT_CARD], call [PHONE]."
    assert parts[1] == body["messages"][1]["content"][1]  # type: ignore[index]  # images untouched
    # Fails the Luhn check: an order number, not a card.
    assert out["messages"][2]["content"] == "Order 4111 1111 1111 1112 ships in 3 days."
    assert body["messages"][0]["content"] == "Reply to jane.doe@example.com"  # type: ignore[index]
    only_email = RedactPiiPlugin(RedactOptions(kinds=["email"], mask="<{kind}>"))
    out = only_email.apply(body, ctx_for(body))
    assert out["messages"][0]["content"] == "Reply to <email>"
    assert "4111 1111 1111 1111" in out["messages"][1]["content"][0]["text"]
    assert RedactPiiPlugin(False).apply(body, ctx_for(body)) is body


def test_redact_pii_masks_tool_call_arguments() -> None:
    from router_proxy.plugins.redact_pii import RedactPiiPlugin

    body = {
        "model": "auto",
        "messages": [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "mail", "arguments": '{"to": "bob@example.org"}'},
                    }
                ],
            }
        ],
    }
    out = RedactPiiPlugin(True).apply(body, ctx_for(body))
    assert out["messages"][0]["tool_calls"][0]["function"]["arguments"] == '{"to": "[EMAIL]"}'
    assert out["messages"][0]["content"] is None
