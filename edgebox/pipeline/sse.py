"""Server-sent events for OpenAI-style chat streams: one sans-I/O parser and one usage filter.

Theory of operation — the box (reading the gateway) and the gateway (reading the upstream) both
consume `text/event-stream` bodies, so the parsing lives here once, with no I/O:

* `SseParser.feed(data)` takes whatever bytes the transport delivered (any split, CR, LF or CRLF
  line ends, per the WHATWG event-stream grammar) and returns the complete `SseEvent`s so far; a
  partial event stays buffered until its blank line arrives. `close()` returns a final event that
  had no trailing blank line. An event (or a line) larger than `max_event_bytes` raises
  `SseTooLarge` instead of growing the buffer without bound.
* `SseEvent.raw` is the event re-serialised canonically (`field: value` lines, LF ends, blank line),
  so a relay forwards exactly what it parsed — never bytes it did not look at.
* `decode_chunk(event)` reads one `chat.completion.chunk` (text deltas, finish reasons, usage) with a
  lenient msgspec schema (unknown fields ignored: providers add fields all the time); `[DONE]` is
  `event.done`.
* `UsageFilter` is the gateway's relay policy: it remembers the last usage block seen and drops the
  usage-only chunk the gateway forced (`stream_options.include_usage`) when the client did not ask
  for it, so the client sees the stream it requested and the gateway still bills real usage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from edgebox.errors import EdgeboxError

DEFAULT_MAX_EVENT_BYTES = 1024 * 1024
DONE = "[DONE]"


class SseError(EdgeboxError):
    code = "sse_malformed"


class SseTooLarge(SseError):
    code = "sse_event_too_large"


class SseMalformed(SseError):
    code = "sse_malformed"


@dataclass(frozen=True, slots=True)
class SseEvent:
    data: str = ""
    event: str | None = None
    id: str | None = None
    retry: int | None = None
    comments: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        return self.data == DONE

    @property
    def raw(self) -> bytes:
        lines: list[str] = [f":{c}" for c in self.comments]
        if self.event is not None:
            lines.append(f"event: {self.event}")
        if self.id is not None:
            lines.append(f"id: {self.id}")
        if self.retry is not None:
            lines.append(f"retry: {self.retry}")
        if self.data or not lines:
            lines.extend(f"data: {d}" for d in self.data.split("\n"))
        return ("\n".join(lines) + "\n\n").encode("utf-8")


@dataclass(slots=True)
class _Pending:
    data: list[str] = field(default_factory=list)
    event: str | None = None
    id: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)
    size: int = 0

    def empty(self) -> bool:
        return not (self.data or self.event is not None or self.id is not None or self.retry is not None)

    def build(self) -> SseEvent:
        return SseEvent("\n".join(self.data), self.event, self.id, self.retry, tuple(self.comments))


class SseParser:
    """Incremental `text/event-stream` parser (bytes in, events out; no I/O)."""

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._buf = bytearray()
        self._pending = _Pending()
        self._skip_lf = False  # the previous chunk ended in CR: a leading LF belongs to it
        self._bom_checked = False

    def feed(self, data: bytes) -> list[SseEvent]:
        if not data:
            return []
        if self._skip_lf and data[:1] == b"\n":
            data = data[1:]
        self._skip_lf = False
        self._buf += data
        if not self._bom_checked and len(self._buf) >= 3:
            if self._buf[:3] == b"\xef\xbb\xbf":
                del self._buf[:3]
            self._bom_checked = True
        out: list[SseEvent] = []
        start = 0
        buf = self._buf
        n = len(buf)
        while start < n:
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, lf if lf >= 0 else n)
            if cr >= 0:
                end, nxt = cr, cr + 1
                if nxt < n and buf[nxt] == 0x0A:
                    nxt += 1
                elif nxt == n:
                    self._skip_lf = True
            elif lf >= 0:
                end, nxt = lf, lf + 1
            else:
                break
            event = self._line(bytes(buf[start:end]))
            if event is not None:
                out.append(event)
            start = nxt
        del buf[:start]
        if len(buf) + self._pending.size > self._max:
            raise SseTooLarge("a stream event exceeds the size limit")
        return out

    def close(self) -> list[SseEvent]:
        """End of stream: a final unterminated line and event are dispatched."""
        out: list[SseEvent] = []
        if self._buf:
            event = self._line(bytes(self._buf))
            self._buf.clear()
            if event is not None:
                out.append(event)
        if not self._pending.empty():
            out.append(self._pending.build())
        self._pending = _Pending()
        return out

    def _line(self, line: bytes) -> SseEvent | None:
        if not line:
            if self._pending.empty():
                self._pending = _Pending()
                return None
            event = self._pending.build()
            self._pending = _Pending()
            return event
        p = self._pending
        p.size += len(line) + 1
        if p.size > self._max:
            raise SseTooLarge("a stream event exceeds the size limit")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise SseMalformed("a stream event is not valid UTF-8") from None
        name, sep, value = text.partition(":")
        if not sep:
            value = ""
        elif value.startswith(" "):
            value = value[1:]
        if name == "":
            p.comments.append(value)
        elif name == "data":
            p.data.append(value)
        elif name == "event":
            p.event = value
        elif name == "id":
            if "\0" not in value:
                p.id = value
        elif name == "retry" and value.isdigit():
            p.retry = int(value)
        return None


# ---- OpenAI chat.completion.chunk --------------------------------------------------------------
class Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int | None = None

    @property
    def total(self) -> int:
        if self.total_tokens is not None:
            return self.total_tokens
        return self.prompt_tokens + self.completion_tokens


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    delta: _Delta | None = None
    finish_reason: str | None = None


class ChatChunk(msgspec.Struct):
    choices: list[_Choice] | None = None
    usage: Usage | None = None

    @property
    def text(self) -> str:
        return "".join(c.delta.content or "" for c in self.choices or () if c.delta is not None)

    @property
    def finish_reason(self) -> str | None:
        for c in self.choices or ():
            if c.finish_reason:
                return c.finish_reason
        return None


class UsageEnvelope(msgspec.Struct):
    """Just the usage of a non-streamed completion (everything else is relayed untouched)."""

    usage: Usage | None = None
    choices: list[msgspec.Raw] | None = None


_CHUNK = msgspec.json.Decoder(ChatChunk)
USAGE_DECODER = msgspec.json.Decoder(UsageEnvelope)


def decode_chunk(event: SseEvent) -> ChatChunk:
    """The chat chunk an event carries; `SseMalformed` when its data is not one."""
    try:
        return _CHUNK.decode(event.data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise SseMalformed("a stream event is not a chat completion chunk") from None


class UsageFilter:
    """Relay policy: keep the last usage seen; drop the forced usage-only chunk if unasked for."""

    def __init__(self, *, client_wants_usage: bool) -> None:
        self.client_wants_usage = client_wants_usage
        self.usage: Usage | None = None

    def forward(self, event: SseEvent) -> bytes | None:
        """The bytes to forward for `event`, or None to drop it."""
        if event.data and '"usage"' in event.data and not event.done:
            try:
                chunk = _CHUNK.decode(event.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                chunk = None
            if chunk is not None and chunk.usage is not None:
                self.usage = chunk.usage
                if not self.client_wants_usage and not chunk.choices:
                    return None
        return event.raw


__all__ = [
    "DONE",
    "ChatChunk",
    "SseError",
    "SseEvent",
    "SseMalformed",
    "SseParser",
    "SseTooLarge",
    "Usage",
    "UsageEnvelope",
    "UsageFilter",
    "decode_chunk",
]
