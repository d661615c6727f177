"""The guest's Bluetooth stack: btvirt (virtual LE controllers) + bluetoothd, with restart and race repair.

    python hil/virtual/stack.py start            # btvirt -L -l3, bluetoothd, power on hci0..hci2
    python hil/virtual/stack.py restart-bluetoothd

Theory of operation. `btvirt -L -lN` creates N LE-only controllers through /dev/vhci inside ONE
process, so they share a simulated air and can scan/connect to each other. bluetoothd (BlueZ 5.66 in
Debian 12) then exposes them as /org/bluez/hci0..N-1 on the system bus.

Known race (hci_vhci create vs HCI_Reset, see shared notes item 1): the kernel may send HCI_Reset
before btvirt read the vhci create reply; that controller then never comes up (dmesg: "Opcode 0x0c03
failed: -110"). It is detected here — a controller missing from /sys/class/bluetooth or from
bluetoothd's objects after a deadline, or that dmesg line — and repaired by restarting btvirt and
bluetoothd (bounded number of attempts, then a loud failure).

State lives in /run/hil (pid files), so the test suite can restart bluetoothd through this same
script (HIL_BLUETOOTHD_RESTART) while btvirt keeps running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

RUN = Path("/run/hil")
# hci0 box, hci1-hci4 phones, hci5-hci7 spare peripherals for the handle spacers (see spacer.py)
CONTROLLERS = int(os.environ.get("HIL_CONTROLLERS", "8"))
LOG_DIR = Path(os.environ.get("HIL_RESULTS", "/tmp"))
MAIN_CONF = """\
[General]
ControllerMode = le
[GATT]
# One ATT bearer: with EATT (Channels > 1) notifications can arrive reordered.
Channels = 1
[Policy]
AutoEnable = true
"""


class StackError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"HIL: stack: {message}", flush=True)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def _read_pid(name: str) -> int | None:
    try:
        return int((RUN / f"{name}.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None


def _stop(name: str, timeout: float = 5.0) -> None:
    pid = _read_pid(name)
    if pid is None or not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)


def _spawn(name: str, argv: list[str]) -> int:
    logfile = (LOG_DIR / f"{name}.log").open("ab")
    proc = subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
    (RUN / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def _sys_controllers() -> set[str]:
    base = Path("/sys/class/bluetooth")
    if not base.exists():
        return set()
    return {p.name for p in base.iterdir() if p.name.startswith("hci") and ":" not in p.name}


def _dmesg_has_reset_timeout() -> bool:
    out = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    return "Opcode 0x0c03 failed" in out


def _bluez_adapters() -> set[str]:
    out = subprocess.run(
        ["dbus-send", "--system", "--print-reply", "--dest=org.bluez", "/",
         "org.freedesktop.DBus.ObjectManager.GetManagedObjects"],
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    names = set()
    for line in out.splitlines():
        line = line.strip()
        if line.startswith('object path "/org/bluez/hci') and line.count("/") == 3:
            names.add(line.split('"')[1].rsplit("/", 1)[1])
    return names


def _powered(adapter: str) -> bool:
    out = subprocess.run(
        ["dbus-send", "--system", "--print-reply", "--dest=org.bluez", f"/org/bluez/{adapter}",
         "org.freedesktop.DBus.Properties.Get", "string:org.bluez.Adapter1", "string:Powered"],
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    return "boolean true" in out


def _wait(predicate: object, timeout: float) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def expected() -> set[str]:
    return {f"hci{i}" for i in range(CONTROLLERS)}


def start_bluetoothd() -> None:
    conf = RUN / "main.conf"
    conf.write_text(MAIN_CONF)
    # -P battery: reading a phone's battery service makes iOS ask for pairing (see notes).
    _spawn("bluetoothd", ["/usr/sbin/bluetoothd", "-n", "-f", str(conf), "-P", "battery"])
    if not _wait(lambda: expected() <= _bluez_adapters(), 10.0):
        raise StackError(f"bluetoothd shows {sorted(_bluez_adapters())}, expected {sorted(expected())}")
    for adapter in sorted(expected()):
        if not _powered(adapter):
            subprocess.run(["btmgmt", "-i", adapter, "power", "on"], capture_output=True, timeout=10)
    if not _wait(lambda: all(_powered(a) for a in expected()), 10.0):
        raise StackError("adapters did not power on")


def restart_bluetoothd() -> None:
    _stop("bluetoothd")
    start_bluetoothd()


def start(attempts: int = 4) -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    subprocess.run(["modprobe", "bluetooth"], check=True)
    subprocess.run(["modprobe", "hci_vhci"], check=True)
    for attempt in range(1, attempts + 1):
        _spawn("btvirt", ["/usr/bin/btvirt", "-L", f"-l{CONTROLLERS}"])
        ok = _wait(lambda: expected() <= _sys_controllers() and not _dmesg_has_reset_timeout(), 5.0)
        if ok:
            try:
                start_bluetoothd()
                log(f"up: {sorted(expected())} (attempt {attempt})")
                return
            except StackError as exc:
                log(f"attempt {attempt}: {exc}")
        else:
            log(f"attempt {attempt}: controllers {sorted(_sys_controllers())}; vhci create race suspected")
        _stop("bluetoothd")
        _stop("btvirt")
        subprocess.run(["dmesg", "-C"], check=False)
        _wait(lambda: not _sys_controllers(), 5.0)
    raise StackError(f"Bluetooth stack did not come up after {attempts} attempts")


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    try:
        if command == "start":
            start()
        elif command == "restart-bluetoothd":
            restart_bluetoothd()
        elif command == "stop-bluetoothd":
            _stop("bluetoothd")
        elif command == "start-bluetoothd":
            start_bluetoothd()
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except StackError as exc:
        print(f"HIL: stack: FAIL: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
