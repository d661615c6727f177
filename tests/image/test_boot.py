"""Boot the built SD image under qemu-system-aarch64 (-M virt, cortex-a72, TCG), twice.

The image is attached through a qcow2 overlay (the built image stays pristine); boot 2 uses the same
overlay, i.e. the same card. A second, test-only disk carries tests/image/probe.sh, which the kernel
command line starts (`systemd.run=`, systemd-run-generator; nothing of it is in the image). It waits
for edgebox-box.service, writes the guest's state as key=value lines onto that disk, and the guest
powers off; the host reads the disk back with debugfs. The serial console is kept as
var/image/boot-test/serial-N.log and the guest journal as journal-N.txt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.image import imagefs
from tests.image.conftest import REPO

pytestmark = [pytest.mark.image, pytest.mark.slow, pytest.mark.timeout(3600)]

WORK = REPO / "var" / "image" / "boot-test"
BOOT = REPO / "var" / "image" / "boot"
PROBE = Path(__file__).with_name("probe.sh")
BLE = Path(__file__).with_name("ble.sh")
PHONE = Path(__file__).with_name("phone.sh")
BOOT_TIMEOUT_S = int(os.environ.get("EDGEBOX_BOOT_TIMEOUT", "900"))
TOOLS = REPO / "var" / "image" / "cache" / "test-tools"
MIRROR = "http://deb.debian.org/debian"


def btvirt() -> Path:
    """The arm64 `btvirt` (Debian bluez-test-tools; libc only), for the guest: test-only, never in the
    image. Fetched once with apt-get through a private arm64 apt configuration, cached under var/."""
    out = TOOLS / "btvirt"
    if out.exists():
        return out
    apt = TOOLS / "apt"
    for d in ("state/lists/partial", "cache/archives/partial", "etc", "deb"):
        (apt / d).mkdir(parents=True, exist_ok=True)
    (apt / "etc/sources.list").write_text(f"deb [arch=arm64] {MIRROR} bookworm main\n")
    opts = [
        f"-oDir::State={apt}/state",
        f"-oDir::Cache={apt}/cache",
        f"-oDir::Etc::SourceList={apt}/etc/sources.list",
        "-oDir::Etc::SourceParts=/dev/null",
        "-oDir::State::status=/dev/null",
        "-oAPT::Architecture=arm64",
        "-oAPT::Architectures::=arm64",
    ]
    subprocess.run(["apt-get", *opts, "-qq", "update"], check=True, timeout=600)
    subprocess.run(
        ["apt-get", *opts, "-qq", "download", "bluez-test-tools:arm64"],
        cwd=apt / "deb",
        check=True,
        timeout=600,
    )
    deb = next((apt / "deb").glob("bluez-test-tools_*_arm64.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(apt / "x")], check=True)
    shutil.copy2(apt / "x/usr/bin/btvirt", out)
    shutil.rmtree(apt)
    return out


def _probe_disk(path: Path, extra: dict[str, Path]) -> None:
    src = WORK / "probe-src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    shutil.copy2(PROBE, src / "probe.sh")
    for name, f in extra.items():
        shutil.copy2(f, src / name)
    path.unlink(missing_ok=True)
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(src), str(path), "64M"], check=True)


def _read_results(disk: Path, n: int) -> dict[str, str]:
    out = WORK / f"probe-out-{n}"
    shutil.rmtree(out, ignore_errors=True)
    whole = imagefs.Partition(0, 0x83, 0, disk.stat().st_size)
    imagefs.rdump(disk, whole, "/", out)
    for name in (f"journal-{n}.txt", f"probe-{n}.err"):
        if (out / name).exists():
            shutil.copy2(out / name, WORK / name)
    result = out / f"result-{n}.txt"
    assert result.exists(), f"the probe wrote no result (serial log: {WORK / f'serial-{n}.log'})"
    pairs = {}
    for line in result.read_text().splitlines():
        key, _, value = line.partition("=")
        pairs[key] = value
    return pairs


def boot(
    n: int, overlay: Path, extra: dict[str, Path] | None = None, smp: int = 2, machine_id: str = ""
) -> dict[str, str]:
    """Boot the card once; returns the probe's key=value results. `machine_id` is what the card's
    cmdline.txt pins (the Pi firmware passes that file to the kernel; qemu -kernel does not read it)."""
    disk = WORK / f"probe-{n}.ext4"
    _probe_disk(disk, extra or {})
    run = f"/bin/sh -c 'mount /dev/vdb /mnt && exec /bin/sh /mnt/probe.sh {n}'"
    cmdline = (
        "console=ttyAMA0 root=LABEL=RASPIROOT ro rootfstype=ext4 rootwait net.ifnames=0 "
        # The journal goes to the serial log too: the only view into a guest that never finishes booting.
        "systemd.journald.forward_to_console=1 "
        # The image's default.target (multi-user) overrides the run generator's; pull the probe in.
        f'systemd.show_status=1 systemd.run="{run}" systemd.wants=kernel-command-line.service '
        "systemd.run_success_action=poweroff systemd.run_failure_action=poweroff"
        + (f" systemd.machine_id={machine_id}" if machine_id else "")
    )
    serial = WORK / f"serial-{n}.log"
    argv = [
        "qemu-system-aarch64",
        "-M", "virt",
        "-cpu", "cortex-a72",
        "-accel", "tcg,thread=multi",
        "-smp", str(smp),
        "-m", "1024",
        "-nographic",
        "-no-reboot",
        "-nic", "none",
        "-kernel", str(BOOT / "vmlinuz"),
        "-initrd", str(BOOT / "initrd.img"),
        "-append", cmdline,
        "-drive", f"if=none,id=card,file={overlay},format=qcow2,cache=unsafe",
        "-device", "virtio-blk-pci,drive=card",
        "-drive", f"if=none,id=probe,file={disk},format=raw",
        "-device", "virtio-blk-pci,drive=probe",
        "-device", "virtio-rng-pci",
    ]  # fmt: skip
    t0 = time.monotonic()
    with serial.open("wb") as log:
        r = subprocess.run(
            ["timeout", "-k", "10", str(BOOT_TIMEOUT_S), *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    results = _read_results(disk, n)
    results["_wall_s"] = f"{time.monotonic() - t0:.0f}"
    results["_qemu_rc"] = str(r.returncode)
    (WORK / f"results-{n}.txt").write_text("".join(f"{k}={v}\n" for k, v in sorted(results.items())))
    return results


@pytest.fixture(scope="module")
def boots(image: Path) -> tuple[dict[str, str], dict[str, str]]:
    assert shutil.which("qemu-system-aarch64"), "qemu-system-aarch64 missing (Debian package qemu-system-arm)"
    assert (BOOT / "vmlinuz").exists() and (BOOT / "initrd.img").exists(), "make image writes var/image/boot/"
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    overlay = WORK / "card.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image.resolve()), str(overlay)],
        check=True,
    )
    tools = {"phone.sh": PHONE, "ble.sh": BLE, "btvirt": btvirt()}
    first = boot(1, overlay, tools)
    for name in ("phone-keystore.json", "phone-socket-keystore.json"):
        keystore = WORK / "probe-out-1" / name
        if keystore.exists():  # boot 2 asks with the phones paired in boot 1
            tools[name] = keystore
    second = boot(2, overlay, tools, machine_id=first.get("cmdline_machine_id", ""))
    return first, second


def _serial(n: int) -> str:
    return (WORK / f"serial-{n}.log").read_text(errors="replace")


def test_first_boot_creates_the_secrets_on_the_card(boots: tuple[dict[str, str], dict[str, str]]) -> None:
    first, _ = boots
    assert first.get("done") == "yes", first
    assert first["firstboot_result"] == "success" and first["firstboot_ran"] != "0", first
    for name in (
        "sha_edgebox_db_key_cred",
        "sha_edgebox_identity_cred",
        "sha_credential_secret",
        "sha_box_toml",
    ):
        assert first[name] != "missing", name
    assert first["db_key_len"] == "32"
    assert first["identity_key_hash"].startswith("secp256r1:"), first["identity_key_hash"]
    assert first["plaintext_keys"] == "", "the box wrote a plaintext key file beside the credentials"
    assert first["root_mount"] == "ro" and first["data_mount"].endswith("[/edgebox]"), first


def test_box_service_is_ready_and_nothing_failed(boots: tuple[dict[str, str], dict[str, str]]) -> None:
    for n, state in enumerate(boots, 1):
        assert state["box_state"] == "active" and state["box_substate"] == "running", (n, state)
        assert state["box_user"] == "edgebox", state
        assert state["failed_units"] == "", (n, state["failed_units"])
        assert state["system_state"] in ("running", "starting"), state
        assert "Started edgebox" in _serial(n) or "edgebox branch box" in _serial(n)


def test_box_is_type_notify_and_readiness_is_measured(boots: tuple[dict[str, str], dict[str, str]]) -> None:
    for state in boots:
        assert state["box_type"] == "notify", state
        assert int(state["box_ready_us"]) > int(state["box_start_us"]) > 0


def test_admin_page_answers_over_https_inside_the_guest(boots: tuple[dict[str, str], dict[str, str]]) -> None:
    for state in boots:
        assert state["admin_socket"] == "active"
        status, _, version = state["admin_https"].partition(":")
        assert status.isdigit() and int(status) < 500 and version.startswith("TLSv1."), state["admin_https"]


def test_second_boot_keeps_identity_and_secrets(boots: tuple[dict[str, str], dict[str, str]]) -> None:
    first, second = boots
    assert second.get("done") == "yes", second
    assert second["firstboot_ran"] == "0", "first boot ran again on the second boot"
    # the credentials' host key is bound to the machine-id: firstboot pins it on cmdline.txt
    assert first["cmdline_machine_id"] == first["machine_id"] == second["machine_id"], (first, second)
    assert second["box_state"] == "active" and second["box_restarts"] == "0", second
    for key in (
        "sha_edgebox_db_key_cred",
        "sha_edgebox_identity_cred",
        "sha_credential_secret",
        "identity_key_hash",
    ):
        assert first[key] == second[key], key


def test_console_commands_and_a_paired_phone_survive_the_reboot(
    boots: tuple[dict[str, str], dict[str, str]],
) -> None:
    """The operator's console on the booted card (`edgebox` on PATH, the installed config, the
    daemon's control socket), and a phone paired in boot 1 (over a test-only Unix socket: no
    Bluetooth controller in this guest) still paired and answered in boot 2, from a branch document
    added with `edgebox box docs add` in boot 1 (no gateway is reachable in the guest)."""
    first, second = boots
    for n, state in enumerate(boots, 1):
        assert state["console_path"] == "/usr/local/bin/edgebox", (n, state)
        assert state["console_status_rc"] == "0", (n, WORK / f"probe-out-{n}" / f"phone-{n}.err")
    err = WORK / "probe-out-1" / "phone-1.err"
    assert first["socket_invite"] == "yes" and first["socket_pair_rc"] == "0", err
    phones = [p for p in first["socket_phones"].split(",") if p]
    assert len(phones) == 1 and phones[0].endswith(":enrolled"), first["socket_phones"]
    assert first["docs_add_rc"] == "0", err
    assert first["socket_ask_rc"] == "0" and first["socket_answer_local"] != "0", err
    assert second["socket_phones"] == first["socket_phones"], "the paired phone did not survive the reboot"
    assert second["socket_ask_rc"] == "0" and second["socket_answer_local"] != "0", (
        WORK / "probe-out-2" / "phone-2.err"
    )


def test_phone_pairs_and_asks_over_the_guest_kernel_bluetooth_stack(
    boots: tuple[dict[str, str], dict[str, str]],
) -> None:
    """The moonshot: hci_vhci + btvirt in the aarch64 guest, the image's box service on hci0, the
    reference phone on hci1; pair in boot 1, and the same phone is still paired and served in boot 2."""
    first, second = boots
    if first.get("ble_error") == "modprobe_hci_vhci":
        # Measured: Debian's linux-image-arm64 (6.1) is built without CONFIG_BT_HCIVHCI, so the
        # image's own kernel has no virtual controller; the amd64 guest of hil/virtual runs this part.
        pytest.xfail("the image's arm64 kernel has no hci_vhci module (Debian builds it for amd64 only)")
    assert first.get("ble_adapters") == "yes", first
    assert first["ble_box_restarted"] == "active"
    assert first["ble_invite"] == "yes" and first["ble_pair_rc"] == "0", WORK / "probe-out-1/ble-1.err"
    assert first["ble_ask_rc"] == "0" and int(first["ble_answer_bytes"]) > 0
    phones = [p for p in first["ble_phones"].split(",") if p]
    assert len(phones) == 1
    assert second["ble_phones"] == first["ble_phones"], "the paired phone did not survive the reboot"
    assert second["ble_ask_rc"] == "0" and int(second["ble_answer_bytes"]) > 0
