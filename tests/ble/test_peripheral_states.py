"""The peripheral's state reporting against a real dbus-daemon, without Bluetooth.

This host has no Bluetooth in its kernel, so bluetoothd cannot run here (the qemu HIL tier runs the
real one). These tests run a real private dbus-daemon as the "system bus" and check that a missing
bluetoothd, a missing adapter and a powered-off adapter are reported as states - never a crash -
and that the peripheral follows org.bluez appearing and vanishing (NameOwnerChanged). The stand-in
org.bluez below only answers the two calls involved (GetManagedObjects, Properties.Set); all GATT
and advertising behaviour is tested on the real stack in hil/.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from edgebox.ble.layout import BoxInfo
from edgebox.ble.peripheral import BlePeripheral, ListenerState, PeripheralConfig

CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@pytest.fixture
def system_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    daemon = shutil.which("dbus-daemon")
    if daemon is None:
        pytest.fail("dbus-daemon missing (make unit installs the dbus package)")
    socket = tmp_path / "bus.sock"
    conf = tmp_path / "bus.conf"
    conf.write_text(CONFIG.format(socket=socket))
    proc = subprocess.Popen([daemon, "--nofork", f"--config-file={conf}"])
    for _ in range(200):
        if socket.exists():
            break
        proc.poll()
        assert proc.returncode is None, "dbus-daemon exited"
        time.sleep(0.02)  # waiting for the daemon to start, not a timed assertion
    address = f"unix:path={socket}"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
    try:
        yield address
    finally:
        proc.terminate()
        proc.wait(10)


class FakeBluez:
    """Owns org.bluez on the private bus and answers GetManagedObjects from `objects`."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict[str, Variant]]] = {}
        self.bus: MessageBus | None = None
        self.set_calls: list[Any] = []

    async def start(self) -> None:
        self.bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        self.bus.add_message_handler(self._handle)
        await self.bus.request_name("org.bluez")

    def _handle(self, msg: Message) -> Message | None:
        if msg.message_type != MessageType.METHOD_CALL:
            return None
        if msg.member == "GetManagedObjects":
            return Message.new_method_return(msg, "a{oa{sa{sv}}}", [self.objects])
        if msg.member == "Set":
            self.set_calls.append(msg.body)
            return Message.new_error(msg, "org.bluez.Error.Blocked", "rfkill")
        return Message.new_error(msg, "org.bluez.Error.NotSupported", "not in this stand-in")

    async def add_adapter(self, powered: bool) -> None:
        assert self.bus is not None
        props = {"Address": Variant("s", "00:11:22:33:44:55"), "Powered": Variant("b", powered)}
        self.objects["/org/bluez/hci0"] = {"org.bluez.Adapter1": props}
        await self.bus.send(
            Message.new_signal(
                "/",
                "org.freedesktop.DBus.ObjectManager",
                "InterfacesAdded",
                "oa{sa{sv}}",
                ["/org/bluez/hci0", self.objects["/org/bluez/hci0"]],
            )
        )

    def stop(self) -> None:
        assert self.bus is not None
        self.bus.disconnect()


@pytest.fixture
async def peripheral(system_bus: str) -> AsyncIterator[BlePeripheral]:
    config = PeripheralConfig(box=BoxInfo(1, "test-box", bytes(32)), adapter="hci0", name="t")
    p = BlePeripheral(config)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


async def test_no_bluetoothd_is_a_state(peripheral: BlePeripheral) -> None:
    assert peripheral.state is ListenerState.BLUEZ_MISSING
    accept = asyncio.ensure_future(peripheral.accept())
    await asyncio.sleep(0)
    assert not accept.done()  # waits for phones; does not raise
    accept.cancel()


async def test_follows_bluez_and_adapter(peripheral: BlePeripheral) -> None:
    bluez = FakeBluez()
    await bluez.start()
    try:
        await peripheral.wait_state(ListenerState.ADAPTER_MISSING, timeout=10)
        await bluez.add_adapter(powered=False)
        await peripheral.wait_state(ListenerState.ADAPTER_OFF, timeout=10)
        assert bluez.set_calls and bluez.set_calls[0][1] == "Powered"  # it tried to power it on
    finally:
        bluez.stop()
    await peripheral.wait_state(ListenerState.BLUEZ_MISSING, timeout=10)


async def test_close_is_idempotent(system_bus: str) -> None:
    p = BlePeripheral(PeripheralConfig(box=BoxInfo(1, "b", bytes(32))))
    await p.start()
    await p.close()
    await p.close()
    assert p.state is ListenerState.CLOSED
    assert os.environ["DBUS_SYSTEM_BUS_ADDRESS"] == system_bus


class RegisteringBluez(FakeBluez):
    """Also accepts (and records) the GATT and advertising registrations, like bluetoothd."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def _handle(self, msg: Message) -> Message | None:
        if msg.message_type == MessageType.METHOD_CALL and msg.member in (
            "RegisterApplication",
            "RegisterAdvertisement",
            "UnregisterAdvertisement",
            "UnregisterApplication",
            "Disconnect",
        ):
            self.calls.append(str(msg.member))
            return Message.new_method_return(msg)
        return super()._handle(msg)

    async def gatt(self, p: BlePeripheral, chrc: str, member: str, device: str, *body: Any) -> Message:
        """A GATT call on one of the peripheral's characteristics, as BlueZ makes it for a phone."""
        assert self.bus is not None and p._bus is not None
        options = {"device": Variant("o", device), "mtu": Variant("q", 247)}
        signature = {"ReadValue": "a{sv}", "WriteValue": "aya{sv}"}[member]
        reply = await self.bus.call(
            Message(
                destination=p._bus.unique_name,
                path=f"/org/edgebox/ble/svc/{chrc}",
                interface="org.bluez.GattCharacteristic1",
                member=member,
                signature=signature,
                body=[*body, options],
            )
        )
        assert reply is not None
        return reply


async def test_stop_accepting_stops_advertising_and_keeps_the_links(peripheral: BlePeripheral) -> None:
    from edgebox.transport.base import LinkClosed

    bluez = RegisteringBluez()
    await bluez.start()
    try:
        await bluez.add_adapter(powered=True)
        await peripheral.wait_state(ListenerState.ADVERTISING, timeout=10)
        assert bluez.calls.count("RegisterAdvertisement") == 1
        phone = "/org/bluez/hci0/dev_AA_BB_CC_DD_EE_01"
        reply = await bluez.gatt(peripheral, "info", "ReadValue", phone)
        assert reply.message_type == MessageType.METHOD_RETURN
        link = await asyncio.wait_for(peripheral.accept(), 5)
        waiting = asyncio.ensure_future(peripheral.accept())
        await asyncio.sleep(0)
        await peripheral.stop_accepting()
        assert bluez.calls.count("UnregisterAdvertisement") == 1  # no longer advertised
        assert peripheral.state is ListenerState.STOPPING
        with pytest.raises(LinkClosed):
            await asyncio.wait_for(waiting, 5)
        # A new phone is refused; the connected one still gets its datagrams through.
        other = "/org/bluez/hci0/dev_AA_BB_CC_DD_EE_02"
        refused = await bluez.gatt(peripheral, "info", "ReadValue", other)
        assert refused.error_name == "org.bluez.Error.NotPermitted"
        refused = await bluez.gatt(peripheral, "rx", "WriteValue", other, b"hello")
        assert refused.error_name == "org.bluez.Error.NotPermitted"
        ok = await bluez.gatt(peripheral, "rx", "WriteValue", phone, b"still here")
        assert ok.message_type == MessageType.METHOD_RETURN
        assert await asyncio.wait_for(link.recv(), 5) == b"still here"
        assert peripheral.connections == [phone]
        assert bluez.calls.count("RegisterAdvertisement") == 1  # and it does not re-advertise
        await peripheral.close()
        with pytest.raises(LinkClosed):
            await asyncio.wait_for(link.recv(), 5)
        assert "UnregisterApplication" in bluez.calls
    finally:
        bluez.stop()
