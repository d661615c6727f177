"""Application messages carried inside the secure session (one JSON object per DATA record).

Theory of operation (spec: docs/protocol.md, "Application messages"; JSON Schema exported by
`json_schema()` into docs/app-messages.schema.json). Messages are a tagged union on "type", version
field "v" = 1, decoded strictly by msgspec: unknown fields, wrong types, out-of-range values and
unknown types are refused with `MessageError` whose text names the path, never the value. A
`prompt` is answered by zero or more `chunk`s and exactly one `done` or `error` with the same id;
`cancel` stops an answer early (it still ends with `done`, finish_reason "cancelled"); `ping`/`pong`
check liveness.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

import msgspec

from edgebox.errors import EdgeboxError
from edgebox.schema import validation
from edgebox.schema.chat import Messages

APP_VERSION = 1
MAX_APP_MESSAGE = 65_535 - 17  # one record: framing max minus record overhead (type + tag)

RequestId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
TraceParent = Annotated[str, msgspec.Meta(pattern=r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")]
Version = Literal[1]


class ErrorKind(StrEnum):
    invalid_message = "invalid_message"  # could not be decoded / failed the schema
    too_large = "too_large"
    unsupported_version = "unsupported_version"
    duplicate_id = "duplicate_id"
    injection_blocked = "injection_blocked"
    quota_exceeded = "quota_exceeded"
    upstream_unavailable = "upstream_unavailable"  # queued in the outbox / WAN down
    upstream_error = "upstream_error"
    busy = "busy"
    internal = "internal"


class Options(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=8192)] = 512
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=2.0)] = 0.7
    stream: bool = True
    # The phone can wait for this answer: when the WAN is down the box queues the request in its
    # durable outbox, answers `done` with finish_reason "queued", and delivers the answer (chunks +
    # done with this id) when the gateway has answered and the phone is connected.
    can_wait: bool = False


class Prompt(msgspec.Struct, tag="prompt", tag_field="type", forbid_unknown_fields=True, frozen=True):
    id: RequestId
    messages: Messages
    v: Version = 1
    trace: TraceParent | None = None
    options: Options = Options()


class Chunk(msgspec.Struct, tag="chunk", tag_field="type", forbid_unknown_fields=True, frozen=True):
    id: RequestId
    seq: Annotated[int, msgspec.Meta(ge=0)]
    delta: str
    v: Version = 1


class Usage(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    prompt_tokens: Annotated[int, msgspec.Meta(ge=0)] = 0
    completion_tokens: Annotated[int, msgspec.Meta(ge=0)] = 0
    total_tokens: Annotated[int, msgspec.Meta(ge=0)] = 0


class Done(msgspec.Struct, tag="done", tag_field="type", forbid_unknown_fields=True, frozen=True):
    id: RequestId
    finish_reason: Literal["stop", "length", "cancelled", "queued"] = "stop"
    source: Literal["echo", "cache", "local", "gateway"] = "gateway"
    usage: Usage = Usage()
    trace: TraceParent | None = None
    v: Version = 1


class Error(msgspec.Struct, tag="error", tag_field="type", forbid_unknown_fields=True, frozen=True):
    code: ErrorKind
    message: Annotated[str, msgspec.Meta(max_length=500)]
    id: RequestId | None = None
    retry_after_s: Annotated[float, msgspec.Meta(ge=0)] | None = None
    v: Version = 1


class Cancel(msgspec.Struct, tag="cancel", tag_field="type", forbid_unknown_fields=True, frozen=True):
    id: RequestId
    v: Version = 1


class Ping(msgspec.Struct, tag="ping", tag_field="type", forbid_unknown_fields=True, frozen=True):
    nonce: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    v: Version = 1


class Pong(msgspec.Struct, tag="pong", tag_field="type", forbid_unknown_fields=True, frozen=True):
    nonce: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    v: Version = 1


AppMessage = Prompt | Chunk | Done | Error | Cancel | Ping | Pong
PhoneToBox = Prompt | Cancel | Ping
BoxToPhone = Chunk | Done | Error | Pong

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AppMessage)


class MessageError(EdgeboxError):
    """An application message that cannot be accepted; `kind` is the wire error code to answer with."""

    code = "invalid_message"

    def __init__(self, kind: ErrorKind, message: str, request_id: str | None = None) -> None:
        super().__init__(message, code=kind.value)
        self.kind = kind
        self.request_id = request_id
        self.retry_after_s: float | None = None


def encode(message: AppMessage) -> bytes:
    data = _encoder.encode(message)
    if len(data) > MAX_APP_MESSAGE:
        raise MessageError(ErrorKind.too_large, "application message exceeds the record size limit")
    return data


def decode(data: bytes) -> AppMessage:
    """Strictly decode one message. The error text names the failing path, never input values."""
    if len(data) > MAX_APP_MESSAGE:
        raise MessageError(ErrorKind.too_large, "application message exceeds the record size limit")
    try:
        message: AppMessage = validation.decode(_decoder, data)
    except validation.Invalid as bad:
        if bad.path == "$.type" and bad.code == "invalid_value":
            raise MessageError(ErrorKind.invalid_message, "unknown message type at `$.type`") from None
        if bad.path == "$.v":
            raise MessageError(
                ErrorKind.unsupported_version, "unsupported message version", _peek_id(data)
            ) from None
        raise MessageError(ErrorKind.invalid_message, bad.message, _peek_id(data)) from None
    return message


def _peek_id(data: bytes) -> str | None:
    try:
        obj: Any = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return None
    rid = obj.get("id") if isinstance(obj, dict) else None
    if isinstance(rid, str) and 0 < len(rid) <= 64 and all(c.isalnum() or c in "_.:-" for c in rid):
        return rid
    return None


def json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of all application messages, for docs and other implementations."""
    return msgspec.json.schema(AppMessage)
