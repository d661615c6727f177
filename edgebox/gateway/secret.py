"""The upstream API key: loaded from a file or a systemd credential, never printable.

Theory of operation: the key is held by `UpstreamKey`, whose repr/str are "[redacted]", so it cannot
reach a log line or an exception text by accident; only `authorization()` yields the header value, and
the gateway calls it in exactly one place, when building the upstream request. Loading errors name the
file, never its content. Key format is checked (printable ASCII, no whitespace) so a bad key cannot
make the HTTP client raise an error that quotes the header.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from edgebox.errors import ConfigError

_KEY = re.compile(r"[\x21-\x7e]{8,4096}")


class UpstreamKey:
    __slots__ = ("_header",)

    def __init__(self, value: str) -> None:
        if not _KEY.fullmatch(value):
            raise ConfigError("upstream key must be 8-4096 printable ASCII characters without spaces")
        self._header = "Bearer " + value

    def authorization(self) -> str:
        return self._header

    def __repr__(self) -> str:
        return "UpstreamKey([redacted])"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("UpstreamKey cannot be pickled")


def load_upstream_key(key_file: str | None, credential: str) -> UpstreamKey | None:
    """From `key_file` if set, else $CREDENTIALS_DIRECTORY/<credential> if present, else None."""
    path: Path | None = None
    if key_file:
        path = Path(key_file)
    elif (cred_dir := os.environ.get("CREDENTIALS_DIRECTORY")) and (Path(cred_dir) / credential).is_file():
        path = Path(cred_dir) / credential
    if path is None:
        return None
    try:
        raw = path.read_bytes()
    except OSError:
        raise ConfigError(f"cannot read the upstream key file {path}") from None
    try:
        value = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"upstream key file {path} is not ASCII") from None
    return UpstreamKey(value)
