"""Which config file the box commands use when no `--config` is given: `$EDGEBOX_BOX_CONFIG`, the
installed /etc/edgebox/box.toml (a real box), else the development box; and that the operator
commands then talk to the control socket that file names (not ./var/box)."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgebox.box import config as box_config_module
from edgebox.box.config import CONFIG_ENV, default_config_path
from edgebox.cli import build_parser, main


class FakeDaemon:
    """The daemon side of the control socket, answering every request with a fixed result."""

    def __init__(self, path: Path, result: Any) -> None:
        self.ops: list[str] = []
        self.args: list[dict[str, Any]] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                req = json.loads(self.rfile.readline())
                outer.ops.append(req["op"])
                outer.args.append(req.get("args") or {})
                self.wfile.write(json.dumps({"ok": result}).encode() + b"\n")

        self.server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


PHONE = {
    "phone_id": "a1b2c3d4e5f60718",
    "name": "front desk",
    "status": "enrolled",
    "last_seen_at": None,
    "connected": True,
}


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An installed /etc/edgebox/box.toml (in tmp), no environment overrides, cwd elsewhere."""
    for var in (CONFIG_ENV, "EDGEBOX_STATE_DIR", "STATE_DIRECTORY", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    etc = tmp_path / "etc"
    etc.mkdir()
    conf = etc / "box.toml"
    conf.write_text(
        f'[box]\nstate_dir = "{tmp_path / "state"}"\ncontrol_socket = "{tmp_path / "ctl.sock"}"\n'
    )
    monkeypatch.setattr(box_config_module, "DEFAULT_CONFIG_PATH", conf)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield conf


def test_resolution_order(tmp_path: Path) -> None:
    system = tmp_path / "box.toml"
    assert default_config_path({}, system) is None  # nothing installed: the development default
    system.write_text("")
    assert default_config_path({}, system) == system  # a real box
    other = tmp_path / "other.toml"
    assert default_config_path({CONFIG_ENV: str(other)}, system) == other  # the variable wins


def test_unreadable_installed_file_still_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-root operator on the image cannot stat /var/lib/edgebox/box.toml: the file is used (and
    loading it says it cannot be read) rather than silently serving a development box in ./var/box."""
    system = tmp_path / "box.toml"

    def denied(self: Path, **kw: object) -> object:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "stat", denied)
    assert default_config_path({}, system) == system


def test_cli_uses_the_installed_config(installed: Path, tmp_path: Path) -> None:
    from edgebox.box.cli import _config, config_path

    args = build_parser().parse_args(["box", "phones"])
    assert config_path(args) == installed
    cfg = _config(args)
    assert cfg.control_socket_path == tmp_path / "ctl.sock"
    assert cfg.box.dev_key_files is False  # a real box: never key files
    # An explicit development state dir skips the installed file.
    args = build_parser().parse_args(["box", "--state-dir", str(tmp_path / "dev"), "phones"])
    assert config_path(args) is None and _config(args).box.dev_key_files is True


def test_operator_commands_reach_the_daemon_named_in_the_installed_config(
    installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = FakeDaemon(tmp_path / "ctl.sock", [PHONE])
    try:
        assert main(["box", "phones"]) == 0
    finally:
        daemon.close()
    assert daemon.ops == ["phones"]
    out = capsys.readouterr().out
    assert "a1b2c3d4e5f60718" in out and "front desk" in out and "connected" in out
    assert not (tmp_path / "cwd" / "var").exists()  # no development store was made in the cwd


def test_the_environment_variable_names_another_config(
    installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.toml"
    other.write_text(f'[box]\nstate_dir = "{tmp_path / "s2"}"\ncontrol_socket = "{tmp_path / "c2.sock"}"\n')
    monkeypatch.setenv(CONFIG_ENV, str(other))
    daemon = FakeDaemon(tmp_path / "c2.sock", {"box_id": "ab" * 8})
    try:
        assert main(["box", "status"]) == 0
    finally:
        daemon.close()
    assert daemon.ops == ["status"]
    assert json.loads(capsys.readouterr().out) == {"box_id": "ab" * 8}
    # --config still beats both.
    args = build_parser().parse_args(["box", "--config", str(installed), "status"])
    from edgebox.box.cli import config_path

    assert config_path(args) == installed


def test_invite_lifetime_comes_from_the_config(
    installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`box invite` without --ttl leaves the lifetime to `[box] invite_ttl_s` (it used to send the
    protocol default, whatever the box was configured with); with the daemon down, the store path
    reads the same key."""
    from edgebox.session.invite import PairingInvite

    daemon = FakeDaemon(tmp_path / "ctl.sock", {"code": "EDGEBOX1:x", "expires_at": 0})
    try:
        assert main(["box", "invite", "--no-qr"]) == 0
        assert main(["box", "invite", "--no-qr", "--ttl", "120"]) == 0
    finally:
        daemon.close()
    assert daemon.args == [{"ttl": None}, {"ttl": 120}]
    capsys.readouterr()
    conf = tmp_path / "dev.toml"
    conf.write_text(f'[box]\nstate_dir = "{tmp_path / "dev"}"\ndev_key_files = true\ninvite_ttl_s = 900\n')
    assert main(["box", "--config", str(conf), "init"]) == 0
    capsys.readouterr()
    assert main(["box", "--config", str(conf), "invite", "--no-qr"]) == 0
    code = next(w for w in capsys.readouterr().out.split() if w.startswith("EDGEBOX1:"))
    invite = PairingInvite.decode(code)
    assert 890 <= invite.expires_at - time.time() <= 900
