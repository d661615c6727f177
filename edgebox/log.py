"""Structured logging, configured once per process.

Theory of operation: everything logs through structlog as JSON lines on stderr (journald picks them
up on the box). A redaction processor is the last line of defence for secrets: any event key whose
name marks it as sensitive (prompt, text, key, secret, token, password, authorization, ...) has its
value replaced by "[redacted]" before rendering, so a careless `log.info(..., prompt=p)` cannot leak.
Code is still expected not to pass such values at all; tests grep logs for known secrets.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

SENSITIVE_KEY_PARTS = (
    "prompt",
    "text",
    "content",
    "message_body",
    "secret",
    "password",
    "passwd",
    "token_value",
    "api_key",
    "apikey",
    "authorization",
    "private",
    "psk",
    "credential",
    "cookie",
)
# Keys that contain a sensitive part but are known to be safe metadata (counts, ids, decisions).
SAFE_KEYS = frozenset({"prompt_tokens", "completion_tokens", "total_tokens", "text_len", "content_type"})

_configured = False


def redact_sensitive(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        lowered = key.lower()
        if key == "event" or lowered in SAFE_KEYS:
            continue
        if any(part in lowered for part in SENSITIVE_KEY_PARTS):
            event[key] = "[redacted]"
    return event


class _CurrentStderr:
    """The process's stderr as it is when a line is written, not when logging was configured.

    Test runners and daemons swap `sys.stderr`; a logger that kept the old object would write to a
    closed file and raise inside whatever task logged. A line that cannot be written is dropped:
    logging never fails the caller."""

    def write(self, text: str) -> int:
        try:
            return sys.stderr.write(text)
        except (ValueError, OSError):
            return 0

    def flush(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            sys.stderr.flush()


def configure_logging(level: str = "info", *, stream: Any = None) -> None:
    """Configure structlog + stdlib logging to emit JSON lines. Safe to call more than once."""
    global _configured
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    out: Any = stream if stream is not None else _CurrentStderr()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_sensitive,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    _configured = True


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
