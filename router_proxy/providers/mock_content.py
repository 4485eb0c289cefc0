"""What the mock model answers: text from the reply template, a tool call, or JSON, cut to
``max_tokens`` the way a real model's answer is (finish_reason "length").

Everything is a pure function of the request, so the same request gets the same answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from router_proxy.errors import InvalidRequestError
from router_proxy.protocol import ChatCompletionRequest

# OpenAI refuses n > 128; the gateway's schema allows any n, so the mock answers at most
# this many choices rather than refusing a request the gateway documents as valid.
MAX_N = 128
_NODES = 1000  # schema values built per answer, at most: hostile schemas stay cheap
_DEPTH = 32  # nesting (and $ref hops) followed, at most: cyclic $refs end


def estimate_tokens(text: str) -> int:
    # About four characters a token for English text; deterministic, good enough for a mock.
    return max(1, (len(text) + 3) // 4) if text else 0


@dataclass(frozen=True)
class Reply:
    """One choice's answer: ``content`` text, or a call of ``tool`` with ``arguments``."""

    content: str | None
    tool: str | None
    arguments: str
    finish_reason: str

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.content or "") + estimate_tokens(self.arguments)


def compose(
    request: ChatCompletionRequest, body: dict[str, Any], model: str, prompt: str, text: str
) -> Reply:
    """The answer to ``request`` by ``model``; ``text`` is the reply template, filled in."""
    limit = request.max_completion_tokens or request.max_tokens
    # A cut answer is what a real model sends: maybe invalid JSON, and finish_reason says so.
    budget = None if limit is None else limit * 4  # estimate_tokens' inverse

    def fit(generated: str) -> tuple[str, str]:
        if budget is not None and len(generated) > budget:
            return generated[:budget], "length"
        return generated, "stop"

    function = chosen_function(request)
    if function is not None:
        value = schema_value(_dict(function.get("parameters")), prompt)
        arguments, reason = fit(orjson.dumps(value).decode())
        finish = "length" if reason == "length" else "tool_calls"
        return Reply(None, str(function["name"]), arguments, finish)
    schema = json_schema_of(body.get("response_format"))
    if isinstance(schema, dict):
        if schema:
            text = orjson.dumps(schema_value(schema, prompt)).decode()
        else:  # json_object, or a json_schema without a schema: any object will do
            text = orjson.dumps({"model": model, "reply": text}).decode()
    content, reason = fit(text)
    return Reply(content, None, "", reason)


def chosen_function(request: ChatCompletionRequest) -> dict[str, Any] | None:
    """The function the mock must call: the named one, or the first for "required".
    "auto" (or no tool_choice) and "none" answer in text, which a model may always do."""
    functions: list[dict[str, Any]] = [
        t["function"]
        for t in request.tools or ()
        if t.get("type") == "function" and isinstance(_dict(t.get("function")).get("name"), str)
    ]
    choice = request.tool_choice
    if not functions:
        return None
    if choice == "required":
        return functions[0]
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = _dict(choice.get("function")).get("name")
        for function in functions:
            if function.get("name") == name:
                return function
        # OpenAI refuses this too; a text answer would hide the client's mistake.
        raise InvalidRequestError(
            f"tool_choice names function {name!r}, which is not among the tools",
            param="tool_choice",
        )
    return None


def json_schema_of(response_format: Any) -> dict[str, Any] | None:
    """The schema the content must follow ({} for any JSON object); None for text."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return {}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return schema if isinstance(schema, dict) else {}
    return None


def schema_value(schema: Any, text: str) -> Any:
    """A value valid for ``schema``: required properties only, strings are ``text``,
    numbers 0 (or their bound), booleans false, arrays as short as allowed."""
    return _Builder(schema, text).value(schema, 0)


class _Builder:
    def __init__(self, root: Any, text: str) -> None:
        self.root, self.text, self.nodes = root, text, 0

    def value(self, schema: Any, depth: int) -> Any:
        self.nodes += 1
        if not isinstance(schema, dict) or depth > _DEPTH or self.nodes > _NODES:
            return None
        if isinstance(schema.get("$ref"), str):
            return self.value(self.resolve(schema["$ref"]), depth + 1)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):  # the first option that is not null
            options = schema.get(key)
            if isinstance(options, list) and options:
                usable = [
                    o for o in options if not (isinstance(o, dict) and o.get("type") == "null")
                ]
                return self.value((usable or options)[0], depth + 1)
        if isinstance(schema.get("allOf"), list):  # one schema with every part's properties
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                if isinstance(part, dict) and isinstance(part.get("$ref"), str):
                    part = self.resolve(part["$ref"])
                if isinstance(part, dict):
                    properties = _dict(merged.get("properties")) | _dict(part.get("properties"))
                    required = _list(merged.get("required")) + _list(part.get("required"))
                    merged |= {k: v for k, v in part.items() if k != "allOf"}
                    merged |= {"properties": properties, "required": required}
            return self.value(merged, depth + 1)
        return self.typed(schema, depth)

    def typed(self, schema: dict[str, Any], depth: int) -> Any:
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:  # untyped: what its keywords suggest; the root is an object
            if "properties" in schema or depth == 0:
                kind = "object"
            else:
                kind = "array" if "items" in schema else "string"
        if kind == "object":
            properties = _dict(schema.get("properties"))
            return {
                name: self.value(properties.get(name, {}), depth + 1)
                for name in _list(schema.get("required"))
                if isinstance(name, str)
            }
        if kind == "array":
            count = min(_int(schema.get("minItems")), 8)
            return [self.value(schema.get("items", {}), depth + 1) for _ in range(count)]
        if kind in ("number", "integer"):
            return _number(schema, integer=kind == "integer")
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        length = schema.get("maxLength")
        return self.text[:length] if isinstance(length, int) and length >= 0 else self.text

    def resolve(self, ref: str) -> Any:
        """A local reference (``#/$defs/Name``); anything else resolves to no schema."""
        node: Any = self.root
        for part in ref.removeprefix("#").strip("/").split("/") if ref.startswith("#") else ["?"]:
            node = node.get(part.replace("~1", "/").replace("~0", "~")) if part else node
            if not isinstance(node, dict):
                return None
        return node


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _number(schema: dict[str, Any], *, integer: bool) -> float | int:
    """0, moved inside the schema's bounds when 0 is outside them."""

    def bound(key: str) -> float | None:
        value = schema.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return None

    value = 0.0
    low, high, above = bound("minimum"), bound("maximum"), bound("exclusiveMinimum")
    if low is not None and value < low:
        value = low
    if above is not None and value <= above:
        value = above + 1
    if high is not None and value > high:
        value = high
    if not math.isfinite(value):
        value = 0.0
    if integer:
        return math.ceil(value) if value >= 0 else math.floor(value)
    return int(value) if value.is_integer() else value
