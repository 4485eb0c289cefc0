"""The OpenAI chat-completions wire shapes the gateway reads.

Requests allow unknown fields (``extra="allow"``): the gateway validates what it reads
and forwards the client's own JSON, so parameters it does not know reach
OpenAI-compatible upstreams untouched.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# Counts above this are refused (400) as the document says; JSON integers beyond 64 bits
# would be refused anyway, with a less helpful message.
MAX_COUNT = 2**31 - 1


def _not_a_bool(value: Any) -> Any:
    # JSON's true is not a number, though pydantic's lax mode reads it as 1. (Strict mode
    # would also refuse 5.0, which JSON Schema counts as an integer.)
    if isinstance(value, bool):
        raise ValueError("a number is required, not a boolean")
    return value


# (The bounds sit inside each alias so the OpenAPI document states them.)
NoBool = BeforeValidator(_not_a_bool)
Count = Annotated[int, Field(ge=0, le=MAX_COUNT), NoBool]
PositiveCount = Annotated[int, Field(ge=1, le=MAX_COUNT), NoBool]
Temperature = Annotated[float, Field(ge=0, le=2), NoBool]
Probability = Annotated[float, Field(ge=0, le=1), NoBool]


# The OpenAI APIs a call to a model can be for: a chat completion (every provider), a
# legacy text completion, an embedding. A provider lists the ones it serves.
Endpoint = Literal["chat", "completions", "embeddings"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    """``stream_options``: read by the providers (they add ``include_usage``), so its shape
    is checked; other keys pass through."""

    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = None


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: PositiveCount | None = None
    max_completion_tokens: PositiveCount | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    n: PositiveCount | None = None
    stop: str | list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None


# A prompt or an input: text, texts, or token ids (one list, or one per item).
TokenId = Count
TextOrTokens = str | list[str] | list[TokenId] | list[list[TokenId]]


class CompletionRequest(BaseModel):
    """``POST /v1/completions`` (legacy text completions, fill-in-the-middle via
    ``suffix``): what the gateway reads; the rest passes through."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    prompt: TextOrTokens
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Count | None = None
    n: PositiveCount | None = None
    temperature: Temperature | None = None
    suffix: str | None = None


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``: what the gateway reads; the rest passes through."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    # Nothing to embed is refused, as OpenAI does.
    input: (
        Annotated[str, Field(min_length=1)]
        | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
        | Annotated[list[TokenId], Field(min_length=1)]
        | Annotated[list[Annotated[list[TokenId], Field(min_length=1)]], Field(min_length=1)]
    )
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: PositiveCount | None = None
    stream: Literal[False] | None = None  # one answer: an embedding is never streamed


def texts_of(value: TextOrTokens) -> list[str]:
    """The texts of a prompt or input (token ids carry none the signals can read)."""
    if isinstance(value, str):
        return [value]
    return [item for item in value if isinstance(item, str)]


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


# A token count an upstream reports above this is not believed: no model reads or writes
# that much in one call, and it would spend a budget or a metric in one go.
MAX_USAGE_TOKENS = 100_000_000


class MalformedUsage(ValueError):
    """An upstream's ``usage`` that is not token counts: the gateway ignores it (the
    answer itself is still good) and says so once per model."""


def usage_tokens(usage: dict[str, Any], key: str) -> int:
    """One count of an upstream's ``usage``: absent or null is 0; anything but a whole
    number from 0 to MAX_USAGE_TOKENS raises MalformedUsage."""
    value = usage.get(key)
    if value is None:
        return 0
    if type(value) is int and 0 <= value <= MAX_USAGE_TOKENS:
        return value
    if type(value) is float and value.is_integer() and 0 <= value <= MAX_USAGE_TOKENS:
        return int(value)
    raise MalformedUsage(f"usage.{key} is {_shown(value)}")


def usage_object(usage: object) -> dict[str, Any] | None:
    """An upstream's ``usage`` field: None when absent (or null); MalformedUsage when it
    is there but not an object (a string, a list, a number)."""
    if usage is None:
        return None
    if isinstance(usage, dict):
        return usage
    raise MalformedUsage(f"usage is {_shown(usage)}")


def _shown(value: object) -> str:
    """The value as the log shows it: its type, and its text cut short."""
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def part_text(part: dict[str, Any]) -> str:
    """Text of one content part; non-text parts (images, audio) contribute nothing."""
    if part.get("type") == "text":
        text = part.get("text")
        return text if isinstance(text, str) else ""
    return ""


def message_text(message: ChatMessage) -> str:
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(t for t in (part_text(p) for p in content) if t)
