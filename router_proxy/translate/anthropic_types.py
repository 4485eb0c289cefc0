"""The Messages API request shapes the ``/v1/messages`` surface accepts (and the OpenAPI
document shows): what Anthropic's API takes, less what a chat-format model cannot do.

Strict types (a string is not a number, ``true`` is not an integer), so the document and
the validation agree. Unknown fields are tolerated and dropped: ``cache_control`` on
blocks, tools and system parts, ``citations``, new top-level parameters. Server tools
(``web_search``, ``code_execution``, ...) and their result blocks are not in these shapes:
the gateway answers with chat-format models, which cannot run them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from router_proxy.protocol import MAX_COUNT


def _integral(value: Any) -> Any:
    # JSON Schema's integers include 5.0; strict pydantic would refuse it.
    return int(value) if isinstance(value, float) and value.is_integer() else value


# (constraints before the validator, or the schema would say "ge" for "minimum")
Count = Annotated[int, Field(ge=1, le=MAX_COUNT), BeforeValidator(_integral)]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class TextBlock(_Shape):
    type: Literal["text"]
    text: str


class Base64ImageSource(_Shape):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str


class URLImageSource(_Shape):
    type: Literal["url"]
    url: str


class ImageBlock(_Shape):
    type: Literal["image"]
    source: Annotated[Base64ImageSource | URLImageSource, Field(discriminator="type")]


class PlainTextSource(_Shape):
    type: Literal["text"]
    media_type: Literal["text/plain"]
    data: str


class Base64PDFSource(_Shape):
    type: Literal["base64"]
    media_type: Literal["application/pdf"]
    data: str


class DocumentBlock(_Shape):
    type: Literal["document"]
    source: Annotated[PlainTextSource | Base64PDFSource, Field(discriminator="type")]
    title: str | None = None


class ToolUseBlock(_Shape):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


ToolResultPart = Annotated[TextBlock | ImageBlock, Field(discriminator="type")]


class ToolResultBlock(_Shape):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[ToolResultPart] | None = None
    is_error: bool | None = None


class ThinkingBlock(_Shape):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(_Shape):
    type: Literal["redacted_thinking"]
    data: str


UserBlock = Annotated[
    TextBlock | ImageBlock | DocumentBlock | ToolResultBlock, Field(discriminator="type")
]
AssistantBlock = Annotated[
    TextBlock | ToolUseBlock | ThinkingBlock | RedactedThinkingBlock, Field(discriminator="type")
]


class UserMessage(_Shape):
    role: Literal["user"]
    content: str | list[UserBlock]


class AssistantMessage(_Shape):
    role: Literal["assistant"]
    content: str | list[AssistantBlock]


Message = Annotated[UserMessage | AssistantMessage, Field(discriminator="role")]


class Tool(_Shape):
    """A client tool: the model asks for it, the client runs it."""

    type: Literal["custom"] | None = None
    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any]


class _ToolChoiceBase(_Shape):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAuto(_ToolChoiceBase):
    type: Literal["auto"]


class ToolChoiceAny(_ToolChoiceBase):
    type: Literal["any"]


class ToolChoiceTool(_ToolChoiceBase):
    type: Literal["tool"]
    name: str


class ToolChoiceNone(_Shape):
    type: Literal["none"]


ToolChoice = Annotated[
    ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone, Field(discriminator="type")
]


class Metadata(_Shape):
    user_id: str | None = None


class TokenCountRequest(_Shape):
    """``POST /v1/messages/count_tokens``: the prompt of a Messages request."""

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: dict[str, Any] | None = Field(
        default=None, description="accepted and dropped: chat-format models take no budget"
    )


class MessagesRequest(TokenCountRequest):
    """``POST /v1/messages``."""

    max_tokens: Count
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: Annotated[int, Field(ge=0, le=MAX_COUNT), BeforeValidator(_integral)] | None = Field(
        default=None, description="accepted and dropped"
    )
    stop_sequences: list[str] | None = None
    metadata: Metadata | None = None
