"""W3C Trace Context `traceparent` handling (https://www.w3.org/TR/trace-context/).

Theory of operation: a traceparent is `version-traceid-parentid-flags` in lowercase hex
(`00-<32 hex>-<16 hex>-<2 hex>`). `parse` accepts only well-formed values (all-zero ids and version
`ff` are invalid per the spec; unknown future versions are read by their first four fields), so a
bad header is simply replaced by a fresh trace. Each hop keeps the trace id and mints its own parent
id (`child`). Transport-neutral: used by the box and the gateway alike.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceParent:
    trace_id: str
    parent_id: str
    flags: str = "01"

    def format(self) -> str:
        return f"00-{self.trace_id}-{self.parent_id}-{self.flags}"

    def child(self) -> TraceParent:
        """Same trace, a new span id for the next hop."""
        return TraceParent(self.trace_id, os.urandom(8).hex(), self.flags)


def parse(header: str | None) -> TraceParent | None:
    """The parsed header, or None when absent or malformed (never raises)."""
    if not header or len(header) > 512:
        return None
    m = _TRACEPARENT.fullmatch(header.strip())
    if m is None:
        return None
    version, trace_id, parent_id, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return TraceParent(trace_id, parent_id, flags)


def new() -> TraceParent:
    """A fresh sampled trace."""
    return TraceParent(os.urandom(16).hex(), os.urandom(8).hex(), "01")


def format_traceparent(tp: TraceParent) -> str:
    return tp.format()
