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
from typing import Annotated

import msgspec

from edgebox.errors import EdgeboxError
from edgebox.pipeline import validation
from edgebox.pipeline.chat import MAX_TOTAL_CONTENT_CHARS, ChatMessage, Messages, total_content_chars

MAX_COMPLETION_TOKENS = 32_768
MAX_STOP_SEQUENCES = 4
MAX_N = 4

ModelName = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:/@+-]+$")]
CompletionTokens = Annotated[int, msgspec.Meta(ge=1, le=MAX_COMPLETION_TOKENS)]
StopSequence = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Penalty = Annotated[float, msgspec.Meta(ge=-2.0, le=2.0)]


class StreamOptions(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    include_usage: bool = False


class ChatCompletionRequest(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    model: ModelName
    messages: Messages
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: CompletionTokens | None = None
    max_completion_tokens: CompletionTokens | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=MAX_N)] | None = None
    stop: StopSequence | Annotated[list[StopSequence], msgspec.Meta(max_length=MAX_STOP_SEQUENCES)] | None = (
        None
    )
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    seed: Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)] | None = None
    user: Annotated[str, msgspec.Meta(max_length=256)] | None = None


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
}


def decode_request(body: bytes) -> ChatCompletionRequest:
    """Decode and validate one request body; raises RequestInvalid."""
    try:
        req = validation.decode(_DECODER, body)
    except validation.Invalid as bad:
        raise RequestInvalid(bad.message, code=_CODES.get(bad.code), path=bad.path) from None
    if total_content_chars(req.messages) > MAX_TOTAL_CONTENT_CHARS:
        raise RequestInvalid(
            f"total message content exceeds {MAX_TOTAL_CONTENT_CHARS} characters",
            code="too_large",
            path="$.messages",
        )
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
        messages=list(messages),
        stream=stream,
        stream_options=StreamOptions(include_usage=True) if stream else None,
        max_tokens=max_tokens,
        temperature=temperature,
    )
    return _ENCODER.encode(req)


def completion_cap(req: ChatCompletionRequest) -> int | None:
    """The completion-token cap the request sets itself, if any."""
    if req.max_completion_tokens is not None:
        return req.max_completion_tokens
    return req.max_tokens


def request_schema() -> dict[str, object]:
    """JSON Schema (draft 2020-12 components) of the request body, for the OpenAPI document."""
    (schema,), components = msgspec.json.schema_components(
        [ChatCompletionRequest], ref_template="#/components/schemas/{name}"
    )
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
]
