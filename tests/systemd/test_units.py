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
SERVICES = [
    "edgebox-box.service",
    "edgebox-gateway.service",
    "edgebox-firstboot.service",
    "edgebox-netpolicy.service",
]
UNITS_ALL = [*SERVICES, "edgebox-admin.socket"]
# `systemd-analyze security` exposure ceiling per service, in tenths (issue 15: first boot <= 3.0).
EXPOSURE_TENTHS = {
    "edgebox-box.service": 12,
    "edgebox-gateway.service": 14,
    "edgebox-firstboot.service": 10,
    "edgebox-netpolicy.service": 8,
}


def _exec_lines(unit: str) -> list[str]:
    # systemd allows repeated keys (configparser does not): collect ExecStart lines by hand.
    text = (UNITS / unit).read_text()
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("ExecStart=")]


@pytest.mark.parametrize("unit", UNITS_ALL)
def test_units_verify(unit: str, tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze"), "systemd-analyze missing (Debian package systemd)"
    local = str(Path(sys.executable).with_name("edgebox"))
    for name in UNITS_ALL:
        text = (UNITS / name).read_text().replace(INSTALLED, local)
        # Installed paths of the image's own files -> their place in the repository.
        text = text.replace(
            "/usr/libexec/edgebox/", str(UNITS.parent / "image/overlay/usr/libexec/edgebox") + "/"
        )
        text = text.replace("/opt/edgebox/.venv/bin/python", sys.executable)
        (tmp_path / name).write_text(text)
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


@pytest.mark.parametrize("unit, threshold", sorted(EXPOSURE_TENTHS.items()))
def test_services_are_hardened(unit: str, threshold: int) -> None:
    """`systemd-analyze security` exposure per unit (Debian's own bluetoothd scores 6.2)."""
    r = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--threshold={threshold}", unit],
        cwd=UNITS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout[-2000:]


@pytest.mark.parametrize("unit", SERVICES)
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


def _keys(unit: str, key: str) -> list[str]:
    text = (UNITS / unit).read_text()
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]


def test_box_unit_takes_both_keys_as_encrypted_credentials() -> None:
    creds = _keys("edgebox-box.service", "LoadCredentialEncrypted")
    assert creds == [
        "edgebox-db-key:/var/lib/edgebox/edgebox-db-key.cred",
        "edgebox-identity:/var/lib/edgebox/edgebox-identity.cred",
    ]


def test_first_boot_unit_can_reach_the_tpm_and_seals_both_keys() -> None:
    unit = "edgebox-firstboot.service"
    assert not _keys(unit, "PrivateDevices"), "PrivateDevices= hides /dev/tpmrm0 (auto falls back silently)"
    assert "/dev/tpmrm0 rw" in _keys(unit, "DeviceAllow")
    assert _keys(unit, "ReadWritePaths") == ["/var/lib/systemd -/boot/firmware"]
    assert _keys(unit, "StateDirectory") == ["edgebox"]
    script = (UNITS.parent / "image/overlay/usr/libexec/edgebox/firstboot").read_text()
    assert "seal edgebox-db-key" in script and "seal edgebox-identity" in script
    assert '--with-key="${EDGEBOX_SEAL_KEY:-auto}"' in script


def test_admin_socket_hands_port_443_to_the_box_as_fd_admin() -> None:
    sock = "edgebox-admin.socket"
    assert _keys(sock, "ListenStream") == ["443"]
    assert _keys(sock, "FileDescriptorName") == ["admin"]
    assert _keys(sock, "Service") == ["edgebox-box.service"]


def test_box_unit_runs_the_daemon_with_its_config_under_a_watchdog() -> None:
    unit = "edgebox-box.service"
    (line,) = _exec_lines(unit)
    argv = shlex.split(line)
    assert argv[argv.index("box") :] == ["box", "--config", "/etc/edgebox/box.toml", "run"]
    assert _keys(unit, "Type") == ["notify"] and _keys(unit, "NotifyAccess") == ["main"]
    assert _keys(unit, "WatchdogSec") and _keys(unit, "Sockets") == ["edgebox-admin.socket"]
    assert _keys(unit, "User") == ["edgebox"] and _keys(unit, "TemporaryFileSystem") == ["/boot:ro"]
