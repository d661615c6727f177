"""Chat messages and their limits, shared by the box's `prompt` message and the gateway's API.

Theory of operation: one strict msgspec schema for a chat message (role + content), with the same
size and count limits everywhere, so a request the box accepts is one the gateway accepts. msgspec
rejects unknown fields, wrong types and out-of-range values while decoding, with an error that names
the offending path (never the offending value).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import msgspec

MAX_MESSAGES = 64
MAX_CONTENT_CHARS = 32_000
MAX_TOTAL_CONTENT_CHARS = 96_000
MAX_NAME_CHARS = 64


class Role(StrEnum):
    system = "system"
    user = "user"
    assistant = "assistant"


Content = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CONTENT_CHARS)]


class ChatMessage(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    role: Role
    content: Content


Messages = Annotated[list[ChatMessage], msgspec.Meta(min_length=1, max_length=MAX_MESSAGES)]


def total_content_chars(messages: list[ChatMessage]) -> int:
    return sum(len(m.content) for m in messages)
