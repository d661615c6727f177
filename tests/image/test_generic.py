"""The SD image is generic: no secret or per-card identity in it (every card would share them).

The first-boot notes record how running `systemd-creds` inside the build chroot once silently created
/var/lib/systemd/credential.secret, so this reads the image's partitions themselves, not the build tree.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.image import imagefs
from tests.image.conftest import REPO, load_builder

build = load_builder()


@pytest.mark.parametrize(
    "path",
    [
        "var/lib/systemd/credential.secret",
        "var/lib/systemd/random-seed",
        "var/lib/edgebox/edgebox-db-key.cred",
        "var/lib/edgebox/edgebox-identity.cred",
        "var/lib/edgebox/identity.json",
        "var/lib/edgebox/db.key",
        "etc/ssh/ssh_host_ed25519_key",
        "etc/edgebox/setup-code",
    ],
)
def test_check_generic_finds_each_secret(tmp_path: Path, path: str) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/machine-id").write_text("")
    assert build.check_generic(tmp_path) == []
    (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / path).write_bytes(b"x")
    assert path in build.check_generic(tmp_path)


def test_check_generic_refuses_a_machine_id(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    assert build.check_generic(tmp_path) == ["etc/machine-id (not empty)"]
    (tmp_path / "etc/machine-id").write_text("uninitialized\n")
    assert build.check_generic(tmp_path) == []


def test_stage_keys_follow_their_inputs() -> None:
    # The rootfs cache key depends on the package list, not on edgebox's sources.
    assert build.base_inputs() == build.base_inputs()
    assert len(build.base_inputs()) == 16
    assert "systemd" in build.packages() and "raspi-firmware" in build.packages()


# A PEM/OpenSSH private key block with content (library sources only name the markers).
_PRIVATE_KEY = re.compile(
    rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----\r?\n(?:[A-Za-z0-9+/=:\- ]*\r?\n)*?[A-Za-z0-9+/=]{40,}"
)


def _secret_like(root: Path) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        small_file = p.is_file() and not p.is_symlink() and p.stat().st_size < 4 << 20
        if small_file and _PRIVATE_KEY.search(p.read_bytes()):
            hits.append(str(p.relative_to(root)))
    return hits


def test_private_key_detector() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert _PRIVATE_KEY.search(b"prefix\n" + pem)
    assert not _PRIVATE_KEY.search(b'_SK_START = b"-----BEGIN OPENSSH PRIVATE KEY-----"\n_SK_END = b"..."')


@pytest.mark.image
def test_image_layout_and_no_secrets(image: Path, tmp_path: Path) -> None:
    parts = imagefs.partitions(image)
    assert [p.type for p in parts] == [0x0C, 0x83, 0x83]
    fw, root, data = parts
    assert imagefs.label(image, root) == "RASPIROOT"
    assert imagefs.label(image, data) == "EDGEBOXDATA"

    # Root file system: the parts where secrets would live, plus the application.
    tree = tmp_path / "root"
    for d in ("/etc", "/var/lib", "/root", "/opt/edgebox", "/usr/lib/systemd/system"):
        imagefs.rdump(image, root, d, (tree / d.strip("/")).parent)
    leaks = build.check_generic(tree)
    assert leaks == [], leaks
    assert (tree / "etc/machine-id").read_text() == ""
    assert not list((tree / "etc").glob("ssh/ssh_host_*"))
    assert (
        _secret_like(tree / "etc") == []
        and _secret_like(tree / "var") == []
        and _secret_like(tree / "root") == []
    )
    assert _secret_like(tree / "opt/edgebox") == []

    # Data partition: only the skeleton (empty state directories, systemd's non-secret files).
    dtree = imagefs.rdump(image, data, "/", tmp_path / "data")
    assert sorted(p.name for p in dtree.iterdir() if p.name != "lost+found") == [
        "bluetooth",
        "edgebox",
        "systemd",
    ]
    assert list((dtree / "edgebox").iterdir()) == []
    assert not (dtree / "systemd/credential.secret").exists() and not (dtree / "systemd/random-seed").exists()
    assert _secret_like(dtree) == []

    # Boot partition: firmware, kernel, the provisioning template; no keys or codes.
    files = imagefs.fat_files(image, fw)
    names = {f.rsplit("/", 1)[-1].lower() for f in files}
    assert {"config.txt", "cmdline.txt", "edgebox.toml"} <= names
    assert not [n for n in names if n.endswith((".key", ".cred", ".secret")) or "setup" in n]
    cmdline = imagefs.fat_read(image, fw, "cmdline.txt").decode()
    assert "root=LABEL=RASPIROOT" in cmdline and " ro " in f" {cmdline} "


@pytest.mark.image
def test_image_contents(image: Path, tmp_path: Path) -> None:
    _, root, _ = imagefs.partitions(image)
    fstab = imagefs.debugfs(image, root, "cat /etc/fstab")
    assert any(
        line.split()[:2] == ["LABEL=RASPIROOT", "/"] and "ro" in line.split()[3].split(",")
        for line in fstab.splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert "/var/lib/edgebox" in fstab
    wants = imagefs.debugfs(image, root, "ls -p /etc/systemd/system/multi-user.target.wants")
    for unit in (
        "edgebox-box.service",
        "edgebox-firstboot.service",
        "edgebox-netpolicy.service",
    ):
        assert f"/{unit}/" in wants, unit
    bt = imagefs.debugfs(image, root, "ls -p /etc/systemd/system/bluetooth.target.wants")
    assert "/bluetooth.service/" in bt
    assert "/edgebox-admin.socket/" in imagefs.debugfs(
        image, root, "ls -p /etc/systemd/system/sockets.target.wants"
    )
    # The venv holds aarch64 builds, the models are the x86 build's files byte for byte.
    site = "/opt/edgebox/.venv/lib/python3.11/site-packages"
    assert "_cffi_backend.cpython-311-aarch64-linux-gnu.so" in imagefs.debugfs(image, root, f"ls -p {site}")
    manifest = imagefs.debugfs(image, root, "cat /opt/edgebox/models/manifest.json")
    assert json.loads(manifest) == json.loads((REPO / "var/models/manifest.json").read_text())
    launcher = imagefs.debugfs(image, root, "cat /opt/edgebox/.venv/bin/edgebox")
    assert launcher.startswith("#!/opt/edgebox/.venv/bin/python")
    # `edgebox` is on the console's PATH (operator commands, docs/image.md).
    on_path = imagefs.debugfs(image, root, "stat /usr/local/bin/edgebox")
    assert 'Fast link dest: "/opt/edgebox/.venv/bin/edgebox"' in on_path
