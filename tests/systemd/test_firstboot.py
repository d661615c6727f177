"""The first-boot script, run for real on the build host: sealed credentials, idempotence, provisioning.

systemd-creds uses a throw-away host key ($SYSTEMD_CREDENTIAL_SECRET in tmp_path), so the build host's
own /var/lib/systemd/credential.secret is never created or touched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

REPO = Path(__file__).parents[2]
SCRIPT = REPO / "image/overlay/usr/libexec/edgebox/firstboot"
TEMPLATE = REPO / "image/overlay/usr/share/edgebox/box.toml"
CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

pytestmark = pytest.mark.skipif(not shutil.which("systemd-creds"), reason="systemd-creds missing")


def _env(tmp_path: Path, boot_file: Path) -> dict[str, str]:
    return {
        **os.environ,
        "STATE_DIRECTORY": str(tmp_path / "state"),
        "SYSTEMD_CREDENTIAL_SECRET": str(tmp_path / "credential.secret"),
        "EDGEBOX_SEAL_KEY": "host",
        "EDGEBOX_PYTHON": sys.executable,
        "EDGEBOX_BOOT_FILE": str(boot_file),
        "EDGEBOX_TEMPLATE": str(TEMPLATE),
        "EDGEBOX_SETUP_FILE": str(tmp_path / "edgebox-admin-setup.txt"),
        "PYTHONPATH": str(REPO),
    }


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    Path(env["STATE_DIRECTORY"]).mkdir(mode=0o700, exist_ok=True)
    return subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)


def _decrypt(env: dict[str, str], name: str) -> bytes:
    cred = Path(env["STATE_DIRECTORY"]) / f"{name}.cred"
    r = subprocess.run(
        ["systemd-creds", "decrypt", f"--name={name}", str(cred), "-"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_first_boot_seals_both_credentials_and_writes_the_config(tmp_path: Path) -> None:
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "edgebox.toml").write_text(
        '[gateway]\nurl = "https://gw.example.net:8443"\nca_file = "ca.pem"\nprefixes = ["203.0.113.0/24"]\n'
        '[ble]\nname = "edgebox-branch-12"\n'
    )
    (boot / "ca.pem").write_bytes(CA)
    env = _env(tmp_path, boot / "edgebox.toml")
    r = _run(env)
    assert r.returncode == 0, r.stderr
    state = tmp_path / "state"
    assert sorted(p.name for p in state.iterdir()) == [
        "box.toml",
        "edgebox-db-key.cred",
        "edgebox-identity.cred",
        "gateway-ca.pem",
    ]
    assert len(_decrypt(env, "edgebox-db-key")) == 32
    key = serialization.load_der_private_key(_decrypt(env, "edgebox-identity"), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    # Sealed: the credential file holds neither secret in the clear.
    for name in ("edgebox-db-key", "edgebox-identity"):
        assert _decrypt(env, name) not in (state / f"{name}.cred").read_bytes()
        assert (state / f"{name}.cred").stat().st_mode & 0o077 == 0
    cfg = tomllib.loads((state / "box.toml").read_text())
    assert cfg["box"]["state_dir"] == str(state)
    assert cfg["gateway"] == {"url": "https://gw.example.net:8443", "ca_file": str(state / "gateway-ca.pem")}
    assert cfg["ble"]["name"] == "edgebox-branch-12" and cfg["admin"]["enabled"] is True
    assert (state / "gateway-ca.pem").read_bytes() == CA
    assert (
        "sealed edgebox-db-key" in r.stdout
        and _decrypt(env, "edgebox-db-key").hex() not in r.stdout + r.stderr
    )


def test_first_boot_is_idempotent_and_redoes_only_what_is_missing(tmp_path: Path) -> None:
    env = _env(tmp_path, tmp_path / "no-such-file.toml")
    assert _run(env).returncode == 0
    state = tmp_path / "state"
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in state.iterdir()}
    assert _run(env).returncode == 0
    assert digests == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in state.iterdir()}
    # An interrupted first boot (identity missing) is completed without touching the DB key.
    (state / "edgebox-identity.cred").unlink()
    (state / "edgebox-identity.cred.tmp").write_bytes(b"half")
    assert _run(env).returncode == 0
    assert (
        hashlib.sha256((state / "edgebox-db-key.cred").read_bytes()).hexdigest()
        == digests["edgebox-db-key.cred"]
    )
    assert (state / "edgebox-identity.cred").exists() and not (state / "edgebox-identity.cred.tmp").exists()


def test_bad_provisioning_fails_the_unit_without_a_config(tmp_path: Path) -> None:
    boot = tmp_path / "edgebox.toml"
    boot.write_text('[gateway]\nurl = "http://plain.example"\nca_file = "ca.pem"\n')
    env = _env(tmp_path, boot)
    r = _run(env)
    assert r.returncode != 0
    assert "provisioning_invalid" in r.stderr and "plain.example" not in r.stderr
    assert not (tmp_path / "state/box.toml").exists()
