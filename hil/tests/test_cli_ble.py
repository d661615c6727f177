"""The command lines a user runs, over the real BLE stack: `edgebox box run --ble` on the box
adapter, `edgebox phone --ble pair/ask` on a phone adapter (the same binaries as on a Pi)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, RESULTS


def edgebox(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgebox", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_box_run_ble_and_phone_cli(hil, tmp_path: Path) -> None:
    if hil.box_address:  # real tier with a remote box: this test needs the box here
        return
    args = ["--state-dir", str(tmp_path / "box"), "run", "--ble", "--adapter", hil.box_adapter]
    if hil.btvirt:
        args += ["--adv-instances", "2"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "cli-box.log").open("a") as log:
        box = subprocess.Popen(
            [sys.executable, "-m", "edgebox", "box", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        assert box.stdout is not None
        code = ""
        deadline = time.monotonic() + 600  # the models load slowly under TCG (as in test_box_daemon_ble)
        while time.monotonic() < deadline and not code:
            line = box.stdout.readline()
            if not line:
                break
            if line.startswith("EDGEBOX1:"):
                code = line.strip()
        assert code, "edgebox box run --ble printed no pairing code"
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
        r = edgebox(*phone, "ask", "hello over the air")
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.strip() == "hello over the air"
    finally:
        box.terminate()
        try:
            box.wait(timeout=15)
        except subprocess.TimeoutExpired:
            box.kill()
