"""The control socket checks the peer's uid before it reads anything: a refused peer gets
control_forbidden at once, without sending a request (so it cannot make the daemon buffer one)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from edgebox.box import control_socket
from edgebox.box.config import parse_box_config
from edgebox.box.control_socket import ControlServer
from edgebox.errors import ConfigError


class NoControl:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a refused peer reached the control facade ({name})")


async def test_a_refused_peer_is_answered_before_anything_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control_socket, "peer_uid", lambda sock: 4242)  # not root, not us
    server = ControlServer(NoControl(), tmp_path / "control.sock")  # type: ignore[arg-type]
    await server.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "control.sock"))
        # No request line at all: the old code waited (up to 30 s) to read one before refusing.
        line = await asyncio.wait_for(reader.readline(), 5)
        assert json.loads(line) == {"error": {"code": "control_forbidden", "message": "not allowed"}}
        assert await asyncio.wait_for(reader.read(), 5) == b""  # and the connection is closed
        writer.close()
    finally:
        await server.close()


def test_the_overflow_uid_is_refused_in_control_uids() -> None:
    with pytest.raises(ConfigError, match="65534"):
        parse_box_config({"box": {"control_uids": [1000, 65534]}})
    assert parse_box_config({"box": {"control_uids": [1000]}}).box.control_uids == [1000]
