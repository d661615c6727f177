"""The systemd units: valid for systemd 252, hardened, and their commands are valid edgebox CLIs."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgebox.cli import build_parser

UNITS = Path(__file__).parents[2] / "systemd"
INSTALLED = "/opt/edgebox/.venv/bin/edgebox"
SERVICES = ["edgebox-box.service", "edgebox-gateway.service", "edgebox-firstboot.service"]


def _exec_lines(unit: str) -> list[str]:
    # systemd allows repeated keys (configparser does not): collect ExecStart lines by hand.
    text = (UNITS / unit).read_text()
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("ExecStart=")]


@pytest.mark.parametrize("unit", SERVICES)
def test_units_verify(unit: str, tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze"), "systemd-analyze missing (Debian package systemd)"
    local = str(Path(sys.executable).with_name("edgebox"))
    for name in SERVICES:
        (tmp_path / name).write_text((UNITS / name).read_text().replace(INSTALLED, local))
    r = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / unit)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in (r.stdout + r.stderr).splitlines()
        # The host's own units (bluetooth.service etc.) may be absent from a build machine.
        if line.strip() and unit.split(".")[0] in line
    ]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr


@pytest.mark.parametrize("unit, threshold", [("edgebox-box.service", 15), ("edgebox-gateway.service", 15)])
def test_long_running_services_are_hardened(unit: str, threshold: int) -> None:
    """`systemd-analyze security` exposure, in tenths: 1.5 or better (Debian's bluetoothd is 6.2)."""
    r = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--threshold={threshold}", unit],
        cwd=UNITS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout[-2000:]


@pytest.mark.parametrize(
    "unit", ["edgebox-box.service", "edgebox-gateway.service", "edgebox-firstboot.service"]
)
def test_exec_start_is_a_valid_edgebox_command_line(unit: str) -> None:
    for line in _exec_lines(unit):
        argv = shlex.split(line)
        if argv[0] != INSTALLED:
            continue
        build_parser().parse_args(argv[1:])  # raises SystemExit on an invalid command line


def test_box_unit_takes_the_db_key_only_as_an_encrypted_credential() -> None:
    text = (UNITS / "edgebox-box.service").read_text()
    assert "LoadCredentialEncrypted=edgebox-db-key:" in text
    assert "Environment=EDGEBOX_DB_KEY" not in text and "db.key" not in text
