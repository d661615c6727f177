"""Small input checks shared by the repositories (typed errors, messages without the values)."""

from __future__ import annotations

import math
import re

from edgebox.store.errors import InvalidInputError

_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def identifier(value: object, what: str) -> str:
    """1-128 chars of [A-Za-z0-9._:-], starting alphanumeric (ids, trace ids, keys, models)."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise InvalidInputError(f"{what} must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    return value


def text(value: object, what: str, *, max_len: int, allow_empty: bool = False) -> str:
    """A str without control characters other than tab/newline, at most `max_len` characters."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string")
    if not allow_empty and not value:
        raise InvalidInputError(f"{what} must not be empty")
    if len(value) > max_len:
        raise InvalidInputError(f"{what} is longer than {max_len} characters")
    if _CONTROL.search(value):
        raise InvalidInputError(f"{what} contains control characters")
    return value


def timestamp(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(f"{what} must be a finite number of seconds")
    return float(value)


def positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInputError(f"{what} must be a positive integer")
    return value
