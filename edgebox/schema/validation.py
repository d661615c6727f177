"""Strict decoding with errors that are safe to show: shared by the box's session messages and the
gateway's OpenAI-compatible requests.

Theory of operation: msgspec validates while it decodes and explains failures as
"<what> - at `<path>`". The path is built from schema field names and indices, and "Expected ..."
texts come from our own schema, so both are safe; other texts can quote peer-supplied data
(unknown field names, enum values), so they are rewritten to a category. Non-JSON and too-deep
nesting become errors too, never a crash. Nothing here ever returns input values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeVar

import msgspec

T = TypeVar("T")

_PATH = re.compile(r" - at `(\$[^`]{0,200})`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(.*)`", re.DOTALL)
_INTEGER = re.compile(r"^`([a-z_]{1,40})` must be an integer$")
_MISSING = re.compile(r"^Object missing required field `([A-Za-z0-9_]{1,64})`")


@dataclass(frozen=True, slots=True)
class Invalid(Exception):
    """Why a document was refused: `code` is one of malformed_json, too_deep, unknown_field,
    missing_field, invalid_value, invalid_encoding; `message` and `path` never contain input values."""

    code: str
    message: str
    path: str = "$"


def explain(exc: msgspec.ValidationError) -> Invalid:
    raw = str(exc)
    m = _PATH.search(raw)
    path = m.group(1) if m else "$"
    head = raw[: m.start()] if m else raw
    if _UNKNOWN.match(head) is not None:
        # The field name is the peer's text: say where, never what.
        return Invalid("unknown_field", f"unknown field in `{path}`", path)
    if (r := _MISSING.match(head)) is not None:
        where = f"{path}.{r.group(1)}"
        return Invalid("missing_field", f"missing required field `{where}`", where)
    if (r := _INTEGER.match(head)) is not None:
        return Invalid("invalid_value", f"{head} at `{path}`", f"{path}.{r.group(1)}")
    if head.startswith(("Invalid enum value", "Invalid value")):
        return Invalid("invalid_value", f"value not allowed at `{path}`", path)
    if head.startswith(("Number out of range", "Expected")):
        # msgspec's remaining messages describe types and bounds only ("Expected `str` of length <= 8").
        return Invalid("invalid_value", f"{head[:200]} at `{path}`", path)
    return Invalid("invalid_value", f"invalid value at `{path}`", path)


def decode(decoder: msgspec.json.Decoder[T], data: bytes) -> T:
    """Decode `data` strictly with `decoder`; raise `Invalid` on any failure."""
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise explain(exc) from None
    except msgspec.DecodeError:
        raise Invalid("malformed_json", "not valid JSON") from None
    except RecursionError:
        raise Invalid("too_deep", "JSON nested too deeply") from None
    except UnicodeDecodeError:  # invalid UTF-8 anywhere (content, a key, overlong, encoded surrogate)
        raise Invalid("invalid_encoding", "the body is not valid UTF-8") from None
