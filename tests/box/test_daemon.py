"""The daemon as systemd runs it: READY/WATCHDOG/STOPPING, graceful SIGTERM, the control socket with
peer-credential checks, revoke dropping a live session, BLE degraded without an adapter."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edgebox.box.control_socket import ControlError, call
from edgebox.box.notify import Notifier
from edgebox.box.textmodels import TextModels
from edgebox.session.errors import SessionError
from edgebox.transport.base import LinkClosed
from tests.box.support import NotifySocket, box_config, running_box


async def test_ready_watchdog_control_and_revoke_drops_the_live_session(
    tmp_path: Path, text_models: TextModels
) -> None:
    notify = NotifySocket(tmp_path / "notify")
    cfg = box_config(tmp_path, ble={"enabled": True, "adapter": "hci-none"})
    try:
        async with running_box(
            tmp_path, cfg, text_models, Notifier(notify.env(watchdog_usec=200_000))
        ) as box:
            await notify.wait_for("READY=1")
            await notify.wait_for("WATCHDOG=1")
            status = await call(cfg.control_socket_path, "status")
            assert status["box_id"] == box.daemon.identity.box_id_hex
            assert status["transports"]["ble"].startswith("degraded")  # no adapter: reported, not fatal
            assert status["transports"]["extra-0"] == "serving"
            code = (await call(cfg.control_socket_path, "invite", {"ttl": 120}))["code"]
            assert code.startswith("EDGEBOX1:")
            session, ks = await box.pair("alice")
            other, _ = await box.pair("bob")
            await session.ping()
            phones = await call(cfg.control_socket_path, "phones")
            assert len(phones) == 2 and all(p["connected"] for p in phones)
            alice_id = _phone_id(ks)
            result = await call(cfg.control_socket_path, "revoke", {"phone_id": alice_id})
            assert result["dropped_sessions"] == 1
            with pytest.raises((LinkClosed, SessionError)):
                await session.ping(timeout=5)
            await other.ping()  # the other phone keeps its session
            with pytest.raises(SessionError) as err:
                await box.connect(ks)
            assert err.value.code == "phone_revoked"
            with pytest.raises(ControlError) as cerr:
                await call(cfg.control_socket_path, "revoke", {"phone_id": "0" * 16})
            assert cerr.value.code == "phone_unknown"
            await other.close()
        await notify.wait_for("STOPPING=1")
        assert not cfg.control_socket_path.exists()
    finally:
        notify.close()


def _phone_id(ks: object) -> str:
    from edgebox.session.connection import phone_id

    return phone_id(ks.public_point)  # type: ignore[attr-defined]


async def test_control_socket_refuses_other_users(tmp_path: Path, text_models: TextModels) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to another uid")
    public = Path(tempfile.mkdtemp(prefix="edgebox-ctl-"))  # a directory another user can traverse
    try:
        public.chmod(0o711)
        cfg = box_config(tmp_path, box={"control_socket": str(public / "control.sock")})
        async with running_box(tmp_path, cfg, text_models):
            os.chmod(cfg.control_socket_path, 0o666)  # let the other user reach the peer-credential check
            # The child imports first, then becomes `nobody`, then connects: SO_PEERCRED sees uid 65534.
            script = (
                "import asyncio, os, sys, pathlib\n"
                "from edgebox.box.control_socket import call, ControlError\n"
                "os.setgid(65534); os.setuid(65534)\n"
                "try:\n    asyncio.run(call(pathlib.Path(sys.argv[1]), 'phones'))\n"
                "except ControlError as e:\n    print(e.code)\n"
            )
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", script, str(cfg.control_socket_path), stdout=asyncio.subprocess.PIPE
            )
            out, _ = await proc.communicate()
            assert out.decode().strip() == "control_forbidden"
            # root (and the daemon's own uid) are served
            assert await call(cfg.control_socket_path, "phones") == []
    finally:
        shutil.rmtree(public, ignore_errors=True)


def test_sigterm_is_graceful_under_the_real_cli(tmp_path: Path, text_models: TextModels) -> None:
    del text_models  # the subprocess loads the same built models
    conf = tmp_path / "box.toml"
    conf.write_text(
        f'[box]\nstate_dir = "{tmp_path / "box"}"\ndev_key_files = true\n'
        f'[ble]\nenabled = false\n[dev]\nsocket = "{tmp_path / "phones.sock"}"\n'
    )
    notify = NotifySocket(tmp_path / "notify")
    env = {**os.environ, **notify.env(watchdog_usec=400_000), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgebox", "--log-level", "info", "box", "--config", str(conf), "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        asyncio.run(notify.wait_for("READY=1", timeout=60))
        asyncio.run(notify.wait_for("WATCHDOG=1"))
        assert (tmp_path / "phones.sock").exists() and (tmp_path / "box" / "control.sock").exists()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        asyncio.run(notify.wait_for("STOPPING=1"))
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()
    _, err = proc.communicate()
    assert rc == 0, err
    assert '"box_stopped"' in err
    # The sockets are released (a restart can bind them again at once).
    assert not (tmp_path / "phones.sock").exists() and not (tmp_path / "box" / "control.sock").exists()
