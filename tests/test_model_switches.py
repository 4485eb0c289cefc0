"""Safe model switches (issue 16 item 3): when a conversation moves to another model (its
bound model's breaker opened), the history it carries is made valid for the new one.

Pure translations first; then a real gateway in front of three real upstreams, each as
strict as the real API where switches break: two OpenAI-compatible servers (unknown
fields in messages, tool-call ids over 40 characters and tool results without their
call are refused) and an Anthropic-format one (thinking blocks need their signature,
tool ids must match ``^[a-zA-Z0-9_-]+$`` and pair with their results, and a tool loop
with thinking on must start its last assistant turn with a thinking block). The clients
are the official OpenAI and Anthropic SDKs, keeping their history as they do.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from router_proxy.observability.logging import ACCESS_LOGGER
from router_proxy.translate.chat_to_anthropic import to_anthropic_request
from router_proxy.translate.history import chat_for_switch, messages_for_switch, portable_tool_id
from tests.conftest import GatewayFactory
from tests.support.logs import log_line
from tests.support.serving import ServerThread

Json = dict[str, Any]

# --- the translations --------------------------------------------------------------------

KIMI_ID = "functions.lookup:0"  # Kimi's style: refused by Anthropic
LONG_ID = "call_" + "g" * 60  # too long for OpenAI


def test_portable_ids_stay_and_the_others_map_the_same_way_every_time() -> None:
    assert portable_tool_id("toolu_01A09q90qw90lq917835lq9") == "toolu_01A09q90qw90lq917835lq9"
    assert portable_tool_id("call_abc-DEF_123") == "call_abc-DEF_123"
    mapped = portable_tool_id(KIMI_ID)
    assert re.fullmatch(r"call_[0-9a-f]{24}", mapped)
    assert portable_tool_id(KIMI_ID) == mapped
    assert portable_tool_id(LONG_ID) != mapped
    assert len(portable_tool_id(LONG_ID)) <= 40


def chat_history(call_id: str) -> Json:
    return {
        "model": "auto",
        "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "I should look it up.",
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "lookup", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm"},
                    {"type": "text", "text": "Sunny."},
                ],
                "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "s"}],
            },
            {"role": "user", "content": "and tomorrow?"},
        ],
    }


def test_a_chat_history_loses_the_old_models_reasoning_and_gets_portable_ids() -> None:
    body, changed = chat_for_switch(chat_history(KIMI_ID))
    assert changed == ["reasoning", "tool call ids"]
    call, result, answer = body["messages"][1], body["messages"][2], body["messages"][3]
    assert "reasoning_content" not in call
    assert call["tool_calls"][0]["id"] == result["tool_call_id"] == portable_tool_id(KIMI_ID)
    assert answer == {"role": "assistant", "content": [{"type": "text", "text": "Sunny."}]}


def test_a_history_with_nothing_foreign_is_sent_as_it_is() -> None:
    plain = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    assert chat_for_switch(plain) == (plain, [])
    assert messages_for_switch(plain | {"max_tokens": 5}) == (plain | {"max_tokens": 5}, [])


def test_the_anthropic_translation_maps_ids_anthropic_refuses() -> None:
    out = to_anthropic_request(
        chat_for_switch(chat_history(KIMI_ID))[0]
        | {"messages": chat_history(KIMI_ID)["messages"][:3]},
        model="claude",
        default_max_tokens=100,
        stream=False,
    )
    use, result = out["messages"][1]["content"][0], out["messages"][2]["content"][0]
    assert use["id"] == result["tool_use_id"] == portable_tool_id(KIMI_ID)


def tool_loop(first_block: Json | None) -> Json:
    use = {"type": "tool_use", "id": KIMI_ID, "name": "lookup", "input": {}}
    turn = [first_block, use] if first_block else [use]
    return {
        "model": "claude",
        "max_tokens": 2048,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": turn},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": KIMI_ID, "content": "sunny"}],
            },
        ],
    }


def test_a_tool_loop_another_model_began_without_thinking_turns_thinking_off() -> None:
    body, changed = messages_for_switch(tool_loop(None))
    assert changed == ["thinking", "tool call ids"]
    assert "thinking" not in body
    assert body["messages"][1]["content"][0]["id"] == portable_tool_id(KIMI_ID)


def test_a_tool_loop_with_its_thinking_block_keeps_thinking_and_the_block() -> None:
    thought = {"type": "thinking", "thinking": "look it up", "signature": "sig"}
    body, changed = messages_for_switch(tool_loop(thought))
    assert changed == ["tool call ids"]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert body["messages"][1]["content"][0] == thought


# --- strict upstreams --------------------------------------------------------------------

CHAT_KEYS = {
    "system": {"role", "content", "name"},
    "developer": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "refusal", "function_call", "audio"},
    "tool": {"role", "content", "tool_call_id"},
}
ANTHROPIC_ID = re.compile(r"[a-zA-Z0-9_-]+")
TOOL = {"name": "lookup", "description": "weather", "input_schema": {"type": "object"}}
CHAT_TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


class Strict:
    """One upstream: records each body; ``fail_next`` answers 500 that many times."""

    def __init__(self) -> None:
        self.bodies: list[Json] = []
        self.fail_next = 0

    def error(self, status: int, message: str) -> Response:
        raise NotImplementedError

    async def handle(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.bodies.append(body)
        if self.fail_next:
            self.fail_next -= 1
            return self.error(500, "overloaded")
        problem = self.problem(body)
        if problem is not None:
            return self.error(400, problem)
        return JSONResponse(self.answer(body))

    def problem(self, body: Json) -> str | None:
        raise NotImplementedError

    def answer(self, body: Json) -> Json:
        raise NotImplementedError


class StrictOpenAI(Strict):
    def __init__(self, tool_id: str) -> None:
        super().__init__()
        self.tool_id = tool_id  # the id its tool calls carry (another provider's style)

    def error(self, status: int, message: str) -> Response:
        body = {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
        return JSONResponse(body, status)

    def problem(self, body: Json) -> str | None:
        calls: set[str] = set()
        for i, message in enumerate(body["messages"]):
            extra = set(message) - CHAT_KEYS[message["role"]]
            if extra:
                return f"messages[{i}]: unrecognized fields {sorted(extra)}"
            for call in message.get("tool_calls") or ():
                if len(call["id"]) > 40:
                    return f"messages[{i}].tool_calls.id: string too long (max 40)"
                calls.add(call["id"])
            if message["role"] == "tool" and message["tool_call_id"] not in calls:
                return f"messages[{i}]: tool message without its tool call"
            if isinstance(message.get("content"), list):
                for part in message["content"]:
                    if part.get("type") not in ("text", "image_url"):
                        return f"messages[{i}]: content part type {part.get('type')}"
        return None

    def answer(self, body: Json) -> Json:
        if body["messages"][-1]["role"] == "tool" or not body.get("tools"):
            message: Json = {"role": "assistant", "content": "done"}
        else:
            function = {"name": "lookup", "arguments": '{"city": "Paris"}'}
            call = {"id": self.tool_id, "type": "function", "function": function}
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            message["reasoning_content"] = "I should look it up."  # as DeepSeek sends it
        finish = "tool_calls" if "tool_calls" in message else "stop"
        choice = {"index": 0, "message": message, "finish_reason": finish}
        usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": body["model"],
            "choices": [choice],
            "usage": usage,
        }


class StrictAnthropic(Strict):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def error(self, status: int, message: str) -> Response:
        kind = "api_error" if status >= 500 else "invalid_request_error"
        return JSONResponse({"type": "error", "error": {"type": kind, "message": message}}, status)

    def problem(self, body: Json) -> str | None:
        uses: set[str] = set()
        messages = body["messages"]
        for i, message in enumerate(messages):
            content = message["content"]
            for j, block in enumerate(content if isinstance(content, list) else ()):
                kind = block["type"]
                if kind == "thinking" and not block.get("signature"):
                    return f"messages.{i}.content.{j}.thinking.signature: Field required"
                if kind == "tool_use":
                    if not ANTHROPIC_ID.fullmatch(block["id"]):
                        return f"messages.{i}.content.{j}.tool_use.id: String should match pattern"
                    uses.add(block["id"])
                if kind == "tool_result" and block["tool_use_id"] not in uses:
                    return f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks"
        thinking = body.get("thinking")
        last = messages[-1]["content"]
        looping = isinstance(last, list) and any(b["type"] == "tool_result" for b in last)
        if thinking and thinking.get("type") == "enabled" and looping:
            turn = messages[-2]["content"]
            if not isinstance(turn, list) or turn[0]["type"] not in (
                "thinking",
                "redacted_thinking",
            ):
                return (
                    "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but "
                    "found `tool_use`. When `thinking` is enabled, a final `assistant` message "
                    "must start with a thinking block"
                )
        return None

    def answer(self, body: Json) -> Json:
        self.n += 1
        last = body["messages"][-1]["content"]
        looping = isinstance(last, list) and any(b["type"] == "tool_result" for b in last)
        blocks: list[Json] = []
        if body.get("thinking"):
            blocks.append(
                {"type": "thinking", "thinking": "Let me see.", "signature": f"sig{self.n}"}
            )
        if looping or not body.get("tools"):
            blocks.append({"type": "text", "text": "done"})
            stop = "end_turn"
        else:
            blocks.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_{self.n:04d}",
                    "name": "lookup",
                    "input": {"city": "Paris"},
                }
            )
            stop = "tool_use"
        return {
            "id": f"msg_{self.n}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 1},
        }


@pytest.fixture(scope="module")
def strict() -> Iterator[tuple[StrictOpenAI, StrictOpenAI, StrictAnthropic]]:
    first, second, claude = StrictOpenAI(LONG_ID), StrictOpenAI(KIMI_ID), StrictAnthropic()
    apps = [
        Starlette(routes=[Route("/v1/chat/completions", first.handle, methods=["POST"])]),
        Starlette(routes=[Route("/v1/chat/completions", second.handle, methods=["POST"])]),
        Starlette(routes=[Route("/v1/messages", claude.handle, methods=["POST"])]),
    ]
    servers = [ServerThread(app) for app in apps]
    for server in servers:
        server.start()
    first.url, second.url, claude.url = (s.base_url for s in servers)  # type: ignore[attr-defined]
    yield first, second, claude
    for server in servers:
        server.stop()


@pytest.fixture
def gateway(
    make_gateway: GatewayFactory, strict: tuple[StrictOpenAI, StrictOpenAI, StrictAnthropic]
) -> str:
    first, second, claude = strict
    for server in strict:
        server.bodies.clear()
        server.fail_next = 0
    return make_gateway(f"""\
providers:
  oa1: {{type: openai, base_url: "{first.url}/v1"}}
  oa2: {{type: openai, base_url: "{second.url}/v1"}}
  ant: {{type: anthropic, base_url: "{claude.url}", api_key: k}}
models:
  gpt: {{provider: oa1, upstream_model: gpt-x}}
  kimi: {{provider: oa2, upstream_model: kimi-x}}
  claude: {{provider: ant, upstream_model: claude-x}}
affinity: {{enabled: true}}
resilience:
  breaker: {{failures: 1, window: 60, cooldown: 60}}
  retries: {{attempts_per_model: 1}}
decisions:
  - {{name: claude-first, when: false, route: {{candidates: [claude, gpt]}}}}
  - {{name: kimi-first, when: false, route: {{candidates: [kimi, claude]}}}}
  - {{name: gpt-first, when: false, route: {{candidates: [gpt, kimi]}}}}
  - {{name: default, when: true, route: {{candidates: [gpt]}}}}
""")


def open_breaker(server: Strict, send: Any) -> None:
    """One failed call to the model directly (no session): its breaker opens."""
    server.fail_next = 1
    with pytest.raises((openai.APIStatusError, anthropic.APIStatusError)):
        send()


def switch_of(caplog: pytest.LogCaptureFixture, request_id: str) -> Json:
    line = log_line(caplog, request_id)
    assert line["affinity"] == "rebound"
    return dict(line["switch"])


def test_thinking_from_an_anthropic_answer_never_reaches_an_openai_upstream(
    gateway: str,
    strict: tuple[StrictOpenAI, StrictOpenAI, StrictAnthropic],
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, _, claude_up = strict
    client = anthropic.Anthropic(base_url=gateway, api_key="unused", max_retries=0)
    history: list[Any] = [{"role": "user", "content": "weather in Paris?"}]
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}

    def turn() -> Any:
        return client.messages.with_raw_response.create(
            model="claude-first", max_tokens=2048, thinking=thinking, tools=[TOOL], messages=history
        )

    raw = turn()
    answer = raw.parse()
    assert raw.headers["x-router-model"] == "claude"
    assert [b.type for b in answer.content] == ["thinking", "tool_use"]  # native: kept
    history.append({"role": "assistant", "content": [b.model_dump() for b in answer.content]})
    use = answer.content[1]
    history.append(
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}],
        }
    )
    open_breaker(
        claude_up,
        lambda: client.messages.create(
            model="claude", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        ),
    )
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        raw = turn()
        switch = switch_of(caplog, raw.headers["x-router-request-id"])
    assert raw.headers["x-router-model"] == "gpt"
    assert raw.parse().content[0].text == "done"
    assert (switch["from"], switch["reason"]) == ("claude", "breaker_open")
    sent = json.dumps(first.bodies[-1])
    assert "thinking" not in sent
    assert "signature" not in sent


def test_an_openai_models_tool_ids_and_reasoning_are_made_valid_for_the_next_one(
    gateway: str,
    strict: tuple[StrictOpenAI, StrictOpenAI, StrictAnthropic],
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second, _ = strict
    sdk = openai.OpenAI(base_url=gateway + "/v1", api_key="unused", max_retries=0)
    history: list[Any] = [{"role": "user", "content": "weather in Paris?"}]
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-first", messages=history, tools=[CHAT_TOOL]
    )
    message = raw.parse().choices[0].message
    assert raw.headers["x-router-model"] == "gpt"
    # The client keeps the message as it came, DeepSeek-style reasoning and all.
    history.append(message.model_dump(exclude_none=True))
    assert history[-1]["reasoning_content"]
    assert history[-1]["tool_calls"][0]["id"] == LONG_ID
    history.append({"role": "tool", "tool_call_id": LONG_ID, "content": "sunny"})
    open_breaker(
        first,
        lambda: sdk.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "x"}]
        ),
    )
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        raw = sdk.chat.completions.with_raw_response.create(
            model="gpt-first", messages=history, tools=[CHAT_TOOL]
        )
        switch = switch_of(caplog, raw.headers["x-router-request-id"])
    assert raw.headers["x-router-model"] == "kimi"
    assert raw.parse().choices[0].message.content == "done"
    assert switch == {
        "from": "gpt",
        "reason": "breaker_open",
        "changed": ["reasoning", "tool call ids"],
    }
    sent = second.bodies[-1]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == sent[2]["tool_call_id"] == portable_tool_id(LONG_ID)


def test_a_tool_loop_moving_to_claude_with_thinking_on_is_accepted(
    gateway: str,
    strict: tuple[StrictOpenAI, StrictOpenAI, StrictAnthropic],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, second, claude_up = strict
    client = anthropic.Anthropic(base_url=gateway, api_key="unused", max_retries=0)
    history: list[Any] = [{"role": "user", "content": "weather in Paris?"}]
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}

    def turn() -> Any:
        return client.messages.with_raw_response.create(
            model="kimi-first", max_tokens=2048, thinking=thinking, tools=[TOOL], messages=history
        )

    raw = turn()
    answer = raw.parse()
    assert raw.headers["x-router-model"] == "kimi"  # translated: no thinking block
    use = answer.content[-1]
    assert use.type == "tool_use"
    assert ANTHROPIC_ID.fullmatch(use.id)  # Kimi's id, made valid for a Messages client
    history.append({"role": "assistant", "content": [b.model_dump() for b in answer.content]})
    history.append(
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}],
        }
    )
    open_breaker(
        second,
        lambda: client.messages.create(
            model="kimi", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        ),
    )
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        raw = turn()
        switch = switch_of(caplog, raw.headers["x-router-request-id"])
    assert raw.headers["x-router-model"] == "claude"
    assert raw.parse().content[-1].text == "done"
    assert switch == {"from": "kimi", "reason": "breaker_open", "changed": ["thinking"]}
    assert "thinking" not in claude_up.bodies[-1]  # off for this call only
