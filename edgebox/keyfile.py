"""Private key files: JSON documents written atomically with mode 0600 and refused when readable
by group or others (the phone keystore, the box identity). Errors never include file contents."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from edgebox.errors import EdgeboxError


class KeyFileError(EdgeboxError):
    code = "key_file_invalid"


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` atomically: a temp file in the same directory with `mode`, fsync,
    rename, fsync of the directory. A failure leaves the old file as it was and no temp file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_private_json(path: Path, document: dict[str, Any]) -> None:
    """Write `document` to `path` atomically (temp file, fsync, rename) with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_private_json(path: Path) -> dict[str, Any]:
    """Read a private JSON file, refusing one that group or others can read or write."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist", code="key_file_missing") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise KeyFileError(f"key file {path} is accessible by group/others; chmod 600 it")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise KeyFileError(f"key file {path} is unreadable or not JSON") from None
    if not isinstance(document, dict):
        raise KeyFileError(f"key file {path} does not hold a JSON object")
    return document
