"""The strict OpenAI-compatible chat-completions request schema and its decoder.

Theory of operation: the gateway (and anything else speaking the OpenAI wire format) decodes request
bodies with msgspec straight into `ChatCompletionRequest`: unknown fields, wrong types, out-of-range
numbers, too many or too long messages are all rejected during decoding, before any other code sees
the data. Duplicate JSON keys resolve to the last value, and the gateway re-encodes the validated
struct for the upstream, so the upstream can never see something the validator did not.
Errors become `RequestInvalid` with a stable code and the JSON path at fault; msgspec messages that
could quote a value (enum values, unknown field names) are rewritten so no request content is ever
echoed in an error or log. Transport-neutral.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec

from edgebox.errors import EdgeboxError
from edgebox.pipeline import validation
from edgebox.pipeline.chat import (
    MAX_CONTENT_CHARS,
    MAX_MESSAGES,
    MAX_NAME_CHARS,
    MAX_TOTAL_CONTENT_CHARS,
    ChatMessage,
    Content,
)

MAX_COMPLETION_TOKENS = 32_768
MAX_STOP_SEQUENCES = 4
MAX_N = 4
MAX_PARTS = 64
MAX_TOOLS = 128
MAX_TOOL_CALLS = 128
MAX_SCHEMA_BYTES = 64 * 1024  # a tool's `parameters` / a response_format schema, re-encoded

ModelName = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:/@+-]+$")]
StopSequence = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Penalty = Annotated[float, msgspec.Meta(ge=-2.0, le=2.0)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_CHARS, pattern=r"^[A-Za-z0-9_-]+$")]
FunctionName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Text = Annotated[str, msgspec.Meta(max_length=MAX_CONTENT_CHARS)]
ShortText = Annotated[str, msgspec.Meta(max_length=1024)]
ToolCallId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
# JSON Schema integers may be written 1.0: decoded as a number, checked integral, stored as int
# (`_integers` below); the OpenAPI document says "integer" (`request_schema`).
_INTEGER_FIELDS = ("max_tokens", "max_completion_tokens", "n", "top_logprobs")
CompletionTokens = Annotated[float, msgspec.Meta(ge=1, le=MAX_COMPLETION_TOKENS)]


# ---- content parts ---------------------------------------------------------------------------
class TextPart(msgspec.Struct, tag="text", tag_field="type", forbid_unknown_fields=True, frozen=True):
    text: Text


class RefusalPart(msgspec.Struct, tag="refusal", tag_field="type", forbid_unknown_fields=True, frozen=True):
    refusal: Text


class ImagePart(msgspec.Struct, tag="image_url", tag_field="type", frozen=True):
    """Accepted by the schema only to be refused with a clear `unsupported_content` error."""

    image_url: Any = None


class AudioPart(msgspec.Struct, tag="input_audio", tag_field="type", frozen=True):
    input_audio: Any = None


class FilePart(msgspec.Struct, tag="file", tag_field="type", frozen=True):
    file: Any = None


_NON_TEXT = (ImagePart, AudioPart, FilePart)
TextParts = Annotated[list[TextPart], msgspec.Meta(min_length=1, max_length=MAX_PARTS)]
UserParts = Annotated[
    list[TextPart | ImagePart | AudioPart | FilePart], msgspec.Meta(min_length=1, max_length=MAX_PARTS)
]
AssistantParts = Annotated[list[TextPart | RefusalPart], msgspec.Meta(min_length=1, max_length=MAX_PARTS)]


# ---- messages (tagged by role) -----------------------------------------------------------------
class DeveloperMessage(
    msgspec.Struct, tag="developer", tag_field="role", forbid_unknown_fields=True, omit_defaults=True
):
    content: Content | TextParts
    name: Name | None = None


class SystemMessage(
    msgspec.Struct, tag="system", tag_field="role", forbid_unknown_fields=True, omit_defaults=True
):
    content: Content | TextParts
    name: Name | None = None


class UserMessage(
    msgspec.Struct, tag="user", tag_field="role", forbid_unknown_fields=True, omit_defaults=True
):
    content: Content | UserParts
    name: Name | None = None


class FunctionCall(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: FunctionName
    arguments: Text


class ToolCall(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: ToolCallId
    function: FunctionCall
    type: Literal["function"] = "function"


class AssistantMessage(
    msgspec.Struct, tag="assistant", tag_field="role", forbid_unknown_fields=True, omit_defaults=True
):
    content: Text | AssistantParts | None = None
    name: Name | None = None
    refusal: Text | None = None
    tool_calls: Annotated[list[ToolCall], msgspec.Meta(min_length=1, max_length=MAX_TOOL_CALLS)] | None = None


class ToolMessage(
    msgspec.Struct, tag="tool", tag_field="role", forbid_unknown_fields=True, omit_defaults=True
):
    content: Text | TextParts
    tool_call_id: ToolCallId


Message = DeveloperMessage | SystemMessage | UserMessage | AssistantMessage | ToolMessage
RequestMessages = Annotated[list[Message], msgspec.Meta(min_length=1, max_length=MAX_MESSAGES)]


# ---- tools and response formats ----------------------------------------------------------------
class FunctionDefinition(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: FunctionName
    description: ShortText | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(msgspec.Struct, forbid_unknown_fields=True):
    function: FunctionDefinition
    type: Literal["function"] = "function"


class NamedFunction(msgspec.Struct, forbid_unknown_fields=True):
    name: FunctionName


class NamedToolChoice(msgspec.Struct, forbid_unknown_fields=True):
    function: NamedFunction
    type: Literal["function"] = "function"


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class FormatText(msgspec.Struct, tag="text", tag_field="type", forbid_unknown_fields=True):
    pass


class FormatJsonObject(msgspec.Struct, tag="json_object", tag_field="type", forbid_unknown_fields=True):
    pass


class JsonSchemaFormat(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: FunctionName
    description: ShortText | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class FormatJsonSchema(msgspec.Struct, tag="json_schema", tag_field="type", forbid_unknown_fields=True):
    json_schema: JsonSchemaFormat


ResponseFormat = FormatText | FormatJsonObject | FormatJsonSchema


class StreamOptions(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    include_usage: bool = False


class ChatCompletionRequest(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    model: ModelName
    messages: RequestMessages
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: CompletionTokens | None = None
    max_completion_tokens: CompletionTokens | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    n: Annotated[float, msgspec.Meta(ge=1, le=MAX_N)] | None = None
    stop: StopSequence | Annotated[list[StopSequence], msgspec.Meta(max_length=MAX_STOP_SEQUENCES)] | None = (
        None
    )
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    seed: Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)] | None = None
    user: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    response_format: ResponseFormat | None = None
    tools: Annotated[list[Tool], msgspec.Meta(max_length=MAX_TOOLS)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[float, msgspec.Meta(ge=0, le=20)] | None = None

    def __post_init__(self) -> None:
        for name in _INTEGER_FIELDS:
            value = getattr(self, name)
            if value is not None:
                if not float(value).is_integer():
                    raise ValueError(f"`{name}` must be an integer")
                setattr(self, name, int(value))


class RequestInvalid(EdgeboxError):
    """A request body the schema rejects. `path` is the JSON path at fault ("$" for the whole body)."""

    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, path: str = "$") -> None:
        super().__init__(message, code=code)
        self.path = path


_DECODER = msgspec.json.Decoder(ChatCompletionRequest)
_ENCODER = msgspec.json.Encoder()
# validation.Invalid codes -> this API's error codes (invalid values keep the default code).
_CODES = {
    "malformed_json": "malformed_json",
    "too_deep": "malformed_json",
    "unknown_field": "unknown_field",
    "missing_field": "missing_field",
    "invalid_encoding": "invalid_encoding",
}


def request_texts(req: ChatCompletionRequest) -> list[str]:
    """Every text the request carries that a model will read: message contents and text parts,
    refusals, tool-call arguments, tool descriptions and response-format descriptions. The injection
    classifier scores each of them."""
    out: list[str] = []
    for m in req.messages:
        content = m.content
        if isinstance(content, str):
            out.append(content)
        elif content is not None:
            for part in content:
                if isinstance(part, TextPart):
                    out.append(part.text)
                elif isinstance(part, RefusalPart):
                    out.append(part.refusal)
        if isinstance(m, AssistantMessage):
            if m.refusal:
                out.append(m.refusal)
            for call in m.tool_calls or ():
                out.append(call.function.arguments)
    for tool in req.tools or ():
        if tool.function.description:
            out.append(tool.function.description)
    fmt = req.response_format
    if isinstance(fmt, FormatJsonSchema) and fmt.json_schema.description:
        out.append(fmt.json_schema.description)
    return [t for t in out if t]


def _check_content(req: ChatCompletionRequest) -> None:
    total = 0
    for i, m in enumerate(req.messages):
        if isinstance(m.content, list):
            for j, part in enumerate(m.content):
                if isinstance(part, _NON_TEXT):
                    raise RequestInvalid(
                        f"content part type `{part.__struct_config__.tag}` is not supported "
                        "(this gateway serves text chat only)",
                        code="unsupported_content",
                        path=f"$.messages[{i}].content[{j}].type",
                    )
    for t in request_texts(req):
        total += len(t)
    if total > MAX_TOTAL_CONTENT_CHARS:
        raise RequestInvalid(
            f"total message content exceeds {MAX_TOTAL_CONTENT_CHARS} characters",
            code="too_large",
            path="$.messages",
        )
    for i, tool in enumerate(req.tools or ()):
        params = tool.function.parameters
        if params is not None and len(_ENCODER.encode(params)) > MAX_SCHEMA_BYTES:
            raise RequestInvalid(
                "tool parameters schema too large", code="too_large", path=f"$.tools[{i}].function.parameters"
            )
    fmt = req.response_format
    if (
        isinstance(fmt, FormatJsonSchema)
        and fmt.json_schema.schema is not None
        and len(_ENCODER.encode(fmt.json_schema.schema)) > MAX_SCHEMA_BYTES
    ):
        raise RequestInvalid(
            "response_format schema too large", code="too_large", path="$.response_format.json_schema"
        )


def decode_request(body: bytes) -> ChatCompletionRequest:
    """Decode and validate one request body; raises RequestInvalid."""
    try:
        req = validation.decode(_DECODER, body)
    except validation.Invalid as bad:
        raise RequestInvalid(bad.message, code=_CODES.get(bad.code), path=bad.path) from None
    _check_content(req)
    return req


def encode_request(req: ChatCompletionRequest) -> bytes:
    return _ENCODER.encode(req)


def chat_request_body(
    messages: Sequence[ChatMessage],
    *,
    model: str,
    max_tokens: int | None = None,
    temperature: float | None = None,
    stream: bool = True,
) -> bytes:
    """The one encoder for a request this codebase originates (the box's uplink): the same struct the
    gateway validates, so what the box sends is by construction what the gateway accepts. Streams ask
    for the usage chunk (the box reports usage to the phone)."""
    req = ChatCompletionRequest(
        model=model,
        messages=from_chat_messages(messages),
        stream=stream,
        stream_options=StreamOptions(include_usage=True) if stream else None,
        max_tokens=max_tokens,
        temperature=temperature,
    )
    return _ENCODER.encode(req)


def completion_cap(req: ChatCompletionRequest) -> int | None:
    """The completion-token cap the request sets itself, if any."""
    if req.max_completion_tokens is not None:
        return int(req.max_completion_tokens)
    return None if req.max_tokens is None else int(req.max_tokens)


_ROLE_TYPES: dict[str, type[SystemMessage] | type[UserMessage] | type[AssistantMessage]] = {
    "system": SystemMessage,
    "user": UserMessage,
    "assistant": AssistantMessage,
}


def from_chat_messages(messages: Sequence[ChatMessage]) -> list[Message]:
    """The session's plain chat messages as request messages."""
    return [_ROLE_TYPES[m.role.value](content=m.content) for m in messages]


def request_schema() -> dict[str, object]:
    """JSON Schema (draft 2020-12 components) of the request body, for the OpenAPI document."""
    (schema,), components = msgspec.json.schema_components(
        [ChatCompletionRequest], ref_template="#/components/schemas/{name}"
    )
    props = components["ChatCompletionRequest"]["properties"]
    for name in _INTEGER_FIELDS:  # decoded as numbers, but JSON Schema integers (1.0 is one)
        for alt in props[name]["anyOf"]:
            if alt.get("type") == "number":
                alt["type"] = "integer"
    return {"schema": schema, "components": components}


__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "RequestInvalid",
    "StreamOptions",
    "chat_request_body",
    "completion_cap",
    "decode_request",
    "encode_request",
    "request_schema",
    "request_texts",
]
