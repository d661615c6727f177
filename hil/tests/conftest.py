"""Fixtures shared by the virtual and the real HIL tier.

Configuration comes from the environment (hil/virtual/guest.py sets it in the qemu guest; on real
hardware see hil/real/README.md):

    HIL_BOX_ADAPTER       adapter the box runs on (hci0); empty with HIL_BOX_ADDRESS = remote box
    HIL_BOX_ADDRESS       address of a box running elsewhere (real tier, laptop as central)
    HIL_PHONE_ADAPTERS    comma-separated central adapters (hci1,hci2)
    HIL_BLUETOOTHD_RESTART  shell command restarting bluetoothd (where the box runs)
    HIL_BTVIRT            "1" under btvirt (two rotating advertisement instances, see notes item 2)

The box is a separate process (`hil/tests/echo_box.py`) started once per session, as it would
be on the Pi; its JSON events on stdout are collected by a thread so tests can follow the box side.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(os.environ.get("HIL_RESULTS", REPO / "var" / "hil" / "local"))


@dataclass
class HilConfig:
    box_adapter: str
    box_address: str | None
    phone_adapters: list[str]
    restart_cmd: str | None
    btvirt: bool
    spacer: str | None  # btvirt only: spacer plan, see hil/virtual/spacer.py
    tier: str = "virtual"
    box_name: str = "ebx-hil"
    box_id: str = "hil-box-1"


@dataclass
class BoxProcess:
    proc: subprocess.Popen[str] | None
    events: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    seen: list[dict[str, Any]] = field(default_factory=list)
    spacer_connected: bool = False

    def wait_event(self, predicate: Any, timeout: float = 30.0) -> dict[str, Any]:
        """Next event (not yet consumed) matching predicate; fails the test after `timeout`."""
        for event in self.seen:
            if predicate(event):
                self.seen.remove(event)
                return event
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"box event not seen within {timeout} s; unconsumed: {self.seen[-10:]}")
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            if predicate(event):
                return event
            self.seen.append(event)

    def drain(self) -> None:
        while True:
            try:
                self.seen.append(self.events.get_nowait())
            except queue.Empty:
                return

    def forget(self) -> None:
        self.drain()
        self.seen.clear()


def pytest_report_header() -> str:
    cfg = _config()
    return f"HIL: box {cfg.box_adapter or cfg.box_address}, phones {cfg.phone_adapters}, btvirt={cfg.btvirt}"


def _config() -> HilConfig:
    phones = [a for a in os.environ.get("HIL_PHONE_ADAPTERS", "").split(",") if a]
    return HilConfig(
        box_adapter=os.environ.get("HIL_BOX_ADAPTER", ""),
        box_address=os.environ.get("HIL_BOX_ADDRESS") or None,
        phone_adapters=phones,
        restart_cmd=os.environ.get("HIL_BLUETOOTHD_RESTART") or None,
        btvirt=os.environ.get("HIL_BTVIRT") == "1",
        spacer=os.environ.get("HIL_SPACER") or None,
        tier=os.environ.get("HIL_TIER", "virtual"),
    )


@pytest.fixture(scope="session")
def hil() -> HilConfig:
    cfg = _config()
    if not cfg.phone_adapters or not (cfg.box_adapter or cfg.box_address):
        pytest.fail("HIL environment not configured: HIL_BOX_ADAPTER/HIL_BOX_ADDRESS, HIL_PHONE_ADAPTERS")
    return cfg


def _start(argv: list[str], log_name: str) -> BoxProcess:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stderr = (RESULTS / log_name).open("a")
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1)
    stderr.close()
    bp = BoxProcess(proc=proc)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "unparsed", "line": line.strip()}
            if event.get("event") == "spacer":
                bp.spacer_connected = bool(event["connected"])
            bp.events.put(event)

    threading.Thread(target=pump, daemon=True).start()
    return bp


def _stop(bp: BoxProcess) -> None:
    if bp.proc is None:
        return
    bp.proc.terminate()
    try:
        bp.proc.wait(10)
    except subprocess.TimeoutExpired:
        bp.proc.kill()


@pytest.fixture(scope="session")
def spacer(hil: HilConfig) -> Iterator[BoxProcess | None]:
    """btvirt only: an idle connection that makes the second phone's connection handle unique."""
    if hil.spacer is None:
        yield None
        return
    bp = _start([sys.executable, str(REPO / "hil/virtual/spacer.py"), "--plan", hil.spacer], "spacer.log")
    bp.wait_event(lambda e: e.get("event") == "spacer" and e["connected"], timeout=90)
    try:
        yield bp
    finally:
        _stop(bp)


def wait_spacer(spacer: BoxProcess | None, timeout: float = 90.0) -> None:
    """Block until the spacer connection is up again (after a bluetoothd restart)."""
    if spacer is None:
        return
    deadline = time.monotonic() + timeout
    while not spacer.spacer_connected:
        assert time.monotonic() < deadline, "spacer connection did not come back"
        time.sleep(0.1)


def need_phones(hil: HilConfig, n: int) -> list[str]:
    """The first n phone adapters; the virtual tier always has them (fail), a real rig may not (skip)."""
    if len(hil.phone_adapters) < n:
        message = f"needs {n} phone adapters, HIL_PHONE_ADAPTERS has {len(hil.phone_adapters)}"
        if hil.tier == "virtual":
            pytest.fail(message)
        pytest.skip(message)
    return hil.phone_adapters[:n]


@pytest.fixture(scope="module")
def box(request: pytest.FixtureRequest, hil: HilConfig, spacer: BoxProcess | None) -> Iterator[BoxProcess]:
    """The echo box on HIL_BOX_ADAPTER (or a remote one: then no events are available).

    A test module may set ECHO_BOX_ARGS (extra echo-box arguments, e.g. --no-acquire-notify)."""
    if not hil.box_adapter:
        yield BoxProcess(proc=None)
        return
    argv = [sys.executable, str(REPO / "hil/tests/echo_box.py"), "--adapter", hil.box_adapter,
            "--name", hil.box_name, "--box-id", hil.box_id, "--adv-instances", "2" if hil.btvirt else "1",
            *getattr(request.module, "ECHO_BOX_ARGS", [])]  # fmt: skip
    bp = _start(argv, "box.log")
    ready = bp.wait_event(lambda e: e["event"] == "ready", timeout=60)
    assert ready["state"] == "advertising", ready
    try:
        yield bp
    finally:
        _stop(bp)


def restart_bluetoothd(hil: HilConfig) -> None:
    if hil.restart_cmd is None:
        pytest.fail("HIL_BLUETOOTHD_RESTART is not set")
    subprocess.run(shlex.split(hil.restart_cmd), check=True, timeout=60)


@dataclass
class SessionBox:
    proc: BoxProcess
    box_id: str
    invites: list[str]

    def invite(self) -> str:
        return self.invites.pop(0)


@pytest.fixture(scope="module")
def session_box(
    hil: HilConfig, spacer: BoxProcess | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SessionBox]:
    """BoxServer over the BLE peripheral on HIL_BOX_ADAPTER (module scope: one GATT app per adapter)."""
    if not hil.box_adapter:
        pytest.fail("the session tier needs a local box (HIL_BOX_ADAPTER); see hil/real/README.md")
    invites = tmp_path_factory.mktemp("invites")
    argv = [sys.executable, str(REPO / "hil/tests/session_box.py"), "--adapter", hil.box_adapter,
            "--name", hil.box_name, "--invites", str(invites),
            "--adv-instances", "2" if hil.btvirt else "1"]  # fmt: skip
    bp = _start(argv, "session_box.log")
    try:
        ready = bp.wait_event(lambda e: e["event"] == "ready", timeout=60)
        assert ready["state"] == "advertising", ready
        codes = [p.read_text() for p in sorted(invites.glob("invite-*.txt"))]
        yield SessionBox(bp, ready["box_id"], codes)
    finally:
        _stop(bp)


def _dbus(*args: str) -> str:
    out = subprocess.run(["dbus-send", "--system", "--print-reply", "--dest=org.bluez", *args],
                         capture_output=True, text=True, timeout=10)  # fmt: skip
    return out.stdout


@pytest.fixture(scope="session")
def box_address(hil: HilConfig) -> str | None:
    if hil.box_address:
        return hil.box_address
    out = _dbus(f"/org/bluez/{hil.box_adapter}", "org.freedesktop.DBus.Properties.Get",
                "string:org.bluez.Adapter1", "string:Address")  # fmt: skip
    found = [w.strip('"') for w in out.split() if w.count(":") == 5]
    return found[0] if found else None


@pytest.fixture(autouse=True)
def disconnect_phones_after_test(hil: HilConfig, box_address: str | None) -> Iterator[None]:
    """A failed test must not leave a phone connected to the box (that hides the box from scans)."""
    yield
    if box_address is None:
        return
    dev = "dev_" + box_address.upper().replace(":", "_")
    for adapter in hil.phone_adapters:
        _dbus(f"/org/bluez/{adapter}/{dev}", "org.bluez.Device1.Disconnect")
