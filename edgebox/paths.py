"""Default locations of edgebox state (overridable by flags and environment)."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """The box's state directory: $EDGEBOX_STATE_DIR, systemd's $STATE_DIRECTORY, or ./var/box."""
    for var in ("EDGEBOX_STATE_DIR", "STATE_DIRECTORY"):
        value = os.environ.get(var)
        if value:
            return Path(value.split(":")[0])
    return Path("var/box")


def phone_keystore() -> Path:
    value = os.environ.get("EDGEBOX_PHONE_KEYSTORE")
    if value:
        return Path(value)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "edgebox" / "phone.json"
