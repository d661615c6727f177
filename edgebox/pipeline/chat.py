"""The chat message schema, re-exported for the pipeline; it lives in `edgebox.schema.chat`
(below the session layer, which uses it too)."""

from edgebox.schema.chat import (
    MAX_CONTENT_CHARS,
    MAX_MESSAGES,
    MAX_NAME_CHARS,
    MAX_TOTAL_CONTENT_CHARS,
    ChatMessage,
    Content,
    Messages,
    Role,
    total_content_chars,
)

__all__ = [
    "MAX_CONTENT_CHARS",
    "MAX_MESSAGES",
    "MAX_NAME_CHARS",
    "MAX_TOTAL_CONTENT_CHARS",
    "ChatMessage",
    "Content",
    "Messages",
    "Role",
    "total_content_chars",
]
