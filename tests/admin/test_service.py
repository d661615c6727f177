"""The admin page as the box runs it: `edgebox box admin ...` CLIs and a systemd-style socket hand-over."""

from __future__ import annotations

import hashlib
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

from edgebox.admin.listen import bind_socket
from edgebox.admin.records import SetupCodes
from edgebox.admin.service import admin_dir


def _cli(*args: str, state: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "edgebox", "box", "--state-dir", str(state), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.stdout


def _served_fingerprint(port: int, deadline: float) -> str:
    while True:
        try:
            pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, 64, 2))


def test_setup_code_and_fingerprint_clis(tmp_path: Path) -> None:
    state = tmp_path / "box"
    line = _cli("admin", "setup-code", "--ttl", "120", state=state)
    code = line.rsplit(" ", 1)[1].strip()
    assert "single use" in line and len(code) == 17
    fp = _cli("admin", "fingerprint", state=state).split()[1]
    assert fp == _cli("admin", "fingerprint", state=state).split()[1]  # stable: kept in the state dir
    assert SetupCodes(admin_dir(state)).consume(code)


def test_socket_activation_serves_https_on_the_inherited_fd(tmp_path: Path) -> None:
    """Like systemd's edgebox-admin.socket: the parent binds, the service only inherits fd 3 named
    `admin` (LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES); the configured address is never bound."""
    state = tmp_path / "box"
    _cli("init", state=state)
    fingerprint = _cli("admin", "fingerprint", state=state).split()[1]
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    fd = sock.fileno()
    # what systemd does between fork and exec: the socket becomes fd 3, LISTEN_PID is the service's pid
    launcher = (
        "import os, sys\n"
        f"os.dup2({fd}, 3)\n"
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='admin')\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'edgebox', 'box', '--state-dir', sys.argv[1],"
        " 'admin', 'serve', '--listen', '203.0.113.1', '--port', '9'])\n"
    )
    env = dict(os.environ, EDGEBOX_MODELS_DIR=str(tmp_path / "no-models"))
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher, str(state)],
        pass_fds=(fd,),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    sock.close()  # only the child holds the listening socket now
    try:
        try:
            served = _served_fingerprint(port, time.monotonic() + 60)
        except OSError:
            proc.terminate()
            raise AssertionError(proc.communicate(timeout=30)[0].decode(errors="replace")[-2000:]) from None
        assert served == fingerprint
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        import http.client

        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        conn.request("GET", "/status")
        resp = conn.getresponse()
        assert resp.status == 303 and resp.getheader("Location") == "/setup"
        assert "script-src 'self'" in (resp.getheader("Content-Security-Policy") or "")
        conn.close()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"admin page on port {port}, socket activated: True".encode() in out
