"""Typed errors shared by every part of edgebox.

Every error a user, operator or peer can cause is an `EdgeboxError` with a stable machine-readable
`code` (snake_case, documented in docs/) and a message that is safe to log: messages never contain
key material, tokens, secrets or prompt text. Subsystems subclass it (e.g. `SessionError`).
"""

from __future__ import annotations


class EdgeboxError(Exception):
    """Base for all expected, typed failures."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={str(self)!r})"


class ConfigError(EdgeboxError):
    code = "config_invalid"
