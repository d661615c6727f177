"""The command line as a user runs it: demo, box run + phone pair/ask over a Unix socket."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def edgebox(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgebox", *args], capture_output=True, text=True, timeout=60, env=ENV, **kw
    )  # type: ignore[call-overload]


def test_box_and_phone_over_unix_socket(tmp_path: Path) -> None:
    sock = tmp_path / "box.sock"
    box = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgebox",
            "box",
            "--state-dir",
            str(tmp_path / "box"),
            "run",
            "--socket",
            str(sock),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert box.stdout is not None
        code = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not code:
            line = box.stdout.readline()
            if line.startswith("EDGEBOX1:"):
                code = line.strip()
        assert code, "box did not print a pairing code"
        ks = str(tmp_path / "phone.json")
        r = edgebox("phone", "--keystore", ks, "--socket", str(sock), "pair", code)
        assert r.returncode == 0, r.stderr
        assert "paired with box" in r.stdout
        assert (os.stat(ks).st_mode & 0o777) == 0o600
        r = edgebox("phone", "--keystore", ks, "--socket", str(sock), "ask", "what time is it")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "what time is it"
        # The code is single use: a second pairing is refused with a typed error, no traceback.
        r = edgebox("phone", "--keystore", str(tmp_path / "p2.json"), "--socket", str(sock), "pair", code)
        assert r.returncode == 2
        assert "pairing_secret_invalid" in r.stderr and "Traceback" not in r.stderr
        # A damaged code is a clear error.
        r = edgebox("phone", "--keystore", ks, "--socket", str(sock), "pair", code[:-2] + "AA")
        assert r.returncode == 2 and "invite_invalid" in r.stderr
        # The operator makes a new code while the box runs (same encrypted store), a second phone
        # pairs with it; then the first phone is revoked and refused.
        state = ["box", "--state-dir", str(tmp_path / "box")]
        r = edgebox(*state, "invite", "--no-qr")
        assert r.returncode == 0, r.stderr
        r = edgebox(
            "phone", "--keystore", str(tmp_path / "p3.json"), "--socket", str(sock), "pair", r.stdout.strip()
        )
        assert r.returncode == 0, r.stderr
        r = edgebox(*state, "phones")
        lines = r.stdout.strip().splitlines()
        assert len(lines) == 2 and all("enrolled" in line for line in lines)
        pid = lines[0].split()[0]
        r = edgebox(*state, "revoke", pid)
        assert r.returncode == 0 and pid in r.stdout
        assert edgebox(*state, "revoke", "nosuchphone").returncode == 2
        refused = 0
        for keystore in (ks, str(tmp_path / "p3.json")):
            r = edgebox("phone", "--keystore", keystore, "--socket", str(sock), "ask", "hi")
            refused += r.returncode == 2 and "phone_revoked" in r.stderr
        assert refused == 1
    finally:
        box.terminate()
        box.wait(timeout=10)
    # Logs of the whole run: no pairing code, no prompt text.
    _, err = box.communicate()
    assert code[9:] not in err and "what time is it" not in err
