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

import re
from typing import Annotated

import msgspec

from edgebox.errors import EdgeboxError
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
_PATH = re.compile(r" - at `(\$[^`]{0,200})`$")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
_UNKNOWN = re.compile(r"^Object contains unknown field `(.*)`", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `([A-Za-z0-9_]{1,64})`")


def _sanitise(exc: msgspec.ValidationError) -> RequestInvalid:
    raw = str(exc)
    m = _PATH.search(raw)
    path = m.group(1) if m else "$"
    head = raw[: m.start()] if m else raw
    if (u := _UNKNOWN.match(head)) is not None:
        name = u.group(1)
        where = f"{path}.{name}" if _SAFE_NAME.fullmatch(name) else f"{path}.<unknown>"
        return RequestInvalid(f"unknown field at `{where}`", code="unknown_field", path=where)
    if (r := _MISSING.match(head)) is not None:
        where = f"{path}.{r.group(1)}"
        return RequestInvalid(f"missing required field `{where}`", code="missing_field", path=where)
    if head.startswith("Invalid enum value"):
        return RequestInvalid(f"value not allowed at `{path}`", path=path)
    if "`" in head or head.startswith(("Number out of range", "Expected")):
        # msgspec's remaining messages describe types and bounds only ("Expected `str` of length <= 8").
        return RequestInvalid(f"{head} at `{path}`", path=path)
    return RequestInvalid(f"invalid value at `{path}`", path=path)


def decode_request(body: bytes) -> ChatCompletionRequest:
    """Decode and validate one request body; raises RequestInvalid."""
    try:
        req = _DECODER.decode(body)
    except msgspec.ValidationError as exc:
        raise _sanitise(exc) from None
    except msgspec.DecodeError:
        raise RequestInvalid("body is not valid JSON", code="malformed_json") from None
    except RecursionError:
        raise RequestInvalid("body is nested too deeply", code="malformed_json") from None
    if total_content_chars(req.messages) > MAX_TOTAL_CONTENT_CHARS:
        raise RequestInvalid(
            f"total message content exceeds {MAX_TOTAL_CONTENT_CHARS} characters",
            code="too_large",
            path="$.messages",
        )
    return req


def encode_request(req: ChatCompletionRequest) -> bytes:
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
    "completion_cap",
    "decode_request",
    "encode_request",
    "request_schema",
]
