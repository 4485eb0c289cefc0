"""The OpenAI Responses API request as this gateway reads it: pydantic models that are
both the validation and the OpenAPI document's ``ResponsesRequest`` (so what the document
calls valid is what the gateway accepts). responses_request.py translates it to chat.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag

from router_proxy.protocol import MAX_COUNT

# Unknown fields are allowed (and dropped); known ones are read strictly, as the OpenAPI
# document describes them: "1" is not a number and 1 is not a boolean.
_READ = ConfigDict(extra="allow", strict=True)
_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


def _integral(value: Any) -> Any:
    """2.0 is an integer in JSON Schema (and to JSON parsers in other languages)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_Count = Annotated[int, Field(ge=1, le=MAX_COUNT), BeforeValidator(_integral)]


class ResponsesInputText(BaseModel):
    model_config = _READ
    type: Literal["input_text"]
    text: str


class ResponsesInputImage(BaseModel):
    model_config = _READ
    type: Literal["input_image"]
    image_url: str = Field(description="a URL or a data: URL (file ids are not supported)")
    detail: Literal["low", "high", "auto"] | None = None


class ResponsesOutputText(BaseModel):
    model_config = _READ
    type: Literal["output_text"]
    text: str


class ResponsesRefusal(BaseModel):
    model_config = _READ
    type: Literal["refusal"]
    refusal: str


ResponsesContentPart = Annotated[
    ResponsesInputText | ResponsesInputImage | ResponsesOutputText | ResponsesRefusal,
    Field(discriminator="type"),
]


class ResponsesMessage(BaseModel):
    model_config = _READ
    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[ResponsesContentPart]


class ResponsesFunctionCall(BaseModel):
    model_config = _READ
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str


class ResponsesFunctionCallOutput(BaseModel):
    model_config = _READ
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[ResponsesContentPart]


def _item_type(item: Any) -> Any:
    """A message may leave out its ``type``; anything that is not an object has none."""
    if isinstance(item, dict):
        return item.get("type", "message")
    return getattr(item, "type", None)


ResponsesInputItem = Annotated[
    Annotated[ResponsesMessage, Tag("message")]
    | Annotated[ResponsesFunctionCall, Tag("function_call")]
    | Annotated[ResponsesFunctionCallOutput, Tag("function_call_output")],
    Discriminator(_item_type),
]


class ResponsesFunctionTool(BaseModel):
    model_config = _READ
    type: Literal["function"]
    name: str = Field(pattern=_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ResponsesToolChoiceFunction(BaseModel):
    model_config = _READ
    type: Literal["function"]
    name: str = Field(min_length=1)


class ResponsesFormatText(BaseModel):
    model_config = _READ
    type: Literal["text"]


class ResponsesFormatJsonObject(BaseModel):
    model_config = _READ
    type: Literal["json_object"]


class ResponsesFormatJsonSchema(BaseModel):
    model_config = _READ
    type: Literal["json_schema"]
    name: str = Field(pattern=_NAME)
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


class ResponsesTextConfig(BaseModel):
    model_config = _READ
    format: (
        Annotated[
            ResponsesFormatText | ResponsesFormatJsonObject | ResponsesFormatJsonSchema,
            Field(discriminator="type"),
        ]
        | None
    ) = None


class ResponsesReasoning(BaseModel):
    model_config = _READ
    effort: str | None = None


class ResponsesRequest(BaseModel):
    """A Responses API request as this gateway reads it (unknown fields are dropped)."""

    model_config = _READ
    model: str = Field(min_length=1)
    input: str | Annotated[list[ResponsesInputItem], Field(min_length=1)]
    instructions: str | None = None
    tools: list[ResponsesFunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | ResponsesToolChoiceFunction | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: _Count | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    text: ResponsesTextConfig | None = None
    reasoning: ResponsesReasoning | None = None
    stream: bool | None = None
    store: bool | None = Field(default=None, description="accepted; nothing is stored")
    metadata: dict[str, str] | None = None
    user: str | None = None
    # Refused before validation, with what to send instead (responses_request.py); declared
    # so the document says so too: these take null (background: false) at most.
    previous_response_id: None = Field(
        default=None, description="refused: nothing is stored; send the whole conversation"
    )
    conversation: None = Field(
        default=None, description="refused: nothing is stored; send the whole conversation"
    )
    prompt: None = Field(
        default=None, description="refused: no stored prompt templates; send instructions"
    )
    background: Literal[False] | None = Field(
        default=None, description="refused when true: nothing is stored to poll later"
    )


_MODELS: tuple[type[BaseModel], ...] = (
    ResponsesInputText,
    ResponsesInputImage,
    ResponsesOutputText,
    ResponsesRefusal,
    ResponsesMessage,
    ResponsesFunctionCall,
    ResponsesFunctionCallOutput,
    ResponsesFunctionTool,
    ResponsesToolChoiceFunction,
    ResponsesFormatText,
    ResponsesFormatJsonObject,
    ResponsesFormatJsonSchema,
)
# What pydantic puts in an error's location for a union: member tags and model names,
# and type names like "str" or "list[...]". They are not fields of the request.
LABELS = frozenset({m.__name__ for m in _MODELS}) | {
    "message",
    "function_call",
    "function_call_output",
    "input_text",
    "input_image",
    "output_text",
    "refusal",
    "text",
    "json_object",
    "json_schema",
    "function",
    "str",
    "int",
    "float",
    "bool",
}
