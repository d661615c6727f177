"""The box daemon as shipped (`edgebox box run --config`), over the real BLE stack: a branch document
is added through the control socket, a phone pairs from the printed code and asks a question the
documents answer (a local, cited answer through the whole pipeline: classifier, quota, cache lookup,
documents). Added by the box issue (11); the other HIL tests are the session helper's."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, RESULTS

DOC = (
    "# Riverside branch\n\nThe Riverside branch is open Monday to Friday from 9:00 to 17:00 and on "
    "Saturday from 9:00 to 12:00. It is closed on Sundays.\n"
)


def edgebox(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgebox", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_box_daemon_over_ble(hil, tmp_path: Path) -> None:
    if hil.box_address:  # real tier with a remote box: this test needs the box here
        return
    conf = tmp_path / "box.toml"
    conf.write_text(
        f'[box]\nstate_dir = "{tmp_path / "box"}"\ndev_key_files = true\nprint_invite = true\n'
        f'[ble]\nenabled = true\nadapter = "{hil.box_adapter}"\nadv_instances = {2 if hil.btvirt else 1}\n'
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "box-daemon-ble.log").open("a") as log:
        box = subprocess.Popen(
            [sys.executable, "-m", "edgebox", "--log-level", "info", "box", "--config", str(conf), "run"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        assert box.stdout is not None
        code = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not code:
            line = box.stdout.readline()
            if not line:
                break
            if line.startswith("EDGEBOX1:"):
                code = line.strip()
        assert code, "edgebox box run --config printed no pairing code"
        doc = tmp_path / "riverside.md"
        doc.write_text(DOC)
        r = edgebox("box", "--config", str(conf), "docs", "add", str(doc))
        assert r.returncode == 0, r.stderr[-2000:]
        phone = [
            "phone",
            "--keystore",
            str(tmp_path / "phone.json"),
            "--ble",
            "--adapter",
            hil.phone_adapters[0],
        ]
        r = edgebox(*phone, "pair", code)
        assert r.returncode == 0, r.stderr[-2000:]
        r = edgebox(*phone, "ask", "When is the branch open on Saturday?")
        assert r.returncode == 0, r.stderr[-2000:]
        assert "[local answer from the branch documents" in r.stdout
        assert "Saturday from 9:00 to 12:00" in r.stdout
    finally:
        box.terminate()
        try:
            box.wait(timeout=30)
        except subprocess.TimeoutExpired:
            box.kill()
    assert box.returncode == 0
