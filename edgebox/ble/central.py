"""The phone side of the BLE transport (a central, with bleak): find a box, connect, get a DatagramLink.

Theory of operation. `find_box` scans for the edgebox service UUID (optionally a box name);
`connect` connects with bleak, subscribes to TX, then reads INFO - in that order, so the box's
first datagram cannot be missed - checks the layout version (and the box id if one is expected),
and returns a `BleCentralLink`: RX write-without-response out, TX notifications in, filtered by the
link tag from INFO (older BlueZ broadcasts notifications to every subscribed phone, see
edgebox.ble.layout). The link MTU is the smaller of the box's INFO figure and what this side's ATT
MTU allows.

BlueZ quirk handled here (shared notes, item 3): when one bluetoothd plays both roles, or on a fast
link, the ATT connection can complete before bluetoothd processed the mgmt "Device Connected" event;
then `Connected=True` is never signalled, bleak's cached property stays False and it reports
"failed to discover services, device disconnected" at once. Before bleak waits for services we
re-read Device1.Connected/ServicesResolved over D-Bus and correct bleak's cache - no sleeping.
(bleak is pinned in uv.lock; the hook checks for the private names it needs and is a no-op if they
change, leaving bleak's own behaviour.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.backends.bluezdbus import manager as bluez_manager
from bleak.exc import BleakError
from dbus_fast import Message, MessageType

from edgebox.ble.layout import (
    INFO_UUID,
    RX_UUID,
    SERVICE_UUID,
    TX_UUID,
    BleError,
    LinkInfo,
    datagram_size,
    decode_info,
    split_notification,
)
from edgebox.log import get_logger
from edgebox.transport.base import LinkClosed

log = get_logger("edgebox.ble.central")
_CLOSED = object()


class BoxNotFound(BleError):
    code = "ble_box_not_found"


class ScanFailed(BleError):
    """Scanning itself failed (bluetoothd gone or restarting, adapter missing or off)."""

    code = "ble_scan_failed"


class WrongBox(BleError):
    code = "ble_wrong_box"


class ConnectFailed(BleError):
    code = "ble_connect_failed"


def _install_connected_refresh() -> None:
    """Wrap bleak's BlueZManager._wait_for_services_discovery to re-read Device1 state first."""
    cls: Any = getattr(bluez_manager, "BlueZManager", None)
    original = getattr(cls, "_wait_for_services_discovery", None)
    if original is None or getattr(original, "_edgebox_refresh", False):
        return

    async def wait_for_services_discovery(self: Any, device_path: str) -> None:
        bus = getattr(self, "_bus", None)
        props = getattr(self, "_properties", {}).get(device_path, {}).get("org.bluez.Device1")
        if bus is not None and props is not None:
            for name in ("Connected", "ServicesResolved"):
                if props.get(name):
                    continue
                reply = await bus.call(
                    Message(
                        destination="org.bluez",
                        path=device_path,
                        interface="org.freedesktop.DBus.Properties",
                        member="Get",
                        signature="ss",
                        body=["org.bluez.Device1", name],
                    )
                )
                ok = reply is not None and reply.message_type == MessageType.METHOD_RETURN
                if ok and reply.body[0].value:
                    log.info("ble_bleak_cache_corrected", prop=name)
                    props[name] = True
        await original(self, device_path)

    wait_for_services_discovery._edgebox_refresh = True  # type: ignore[attr-defined]
    cls._wait_for_services_discovery = wait_for_services_discovery


_install_connected_refresh()


async def find_box(
    *, adapter: str | None = None, name: str | None = None, address: str | None = None, timeout: float = 15.0
) -> Any:
    """Scan for an edgebox advertising our service UUID; returns bleak's BLEDevice.

    Raises BoxNotFound when none shows up within `timeout`, ScanFailed when scanning cannot run.
    """

    def match(device: Any, adv: Any) -> bool:
        if SERVICE_UUID not in [u.lower() for u in adv.service_uuids]:
            return False
        if address is not None and device.address.upper() != address.upper():
            return False
        return name is None or adv.local_name == name or device.name == name

    kwargs: dict[str, Any] = {"service_uuids": [SERVICE_UUID]}
    if adapter is not None:
        kwargs["bluez"] = {"adapter": adapter}
    try:
        device = await BleakScanner.find_device_by_filter(match, timeout=timeout, **kwargs)
    except (BleakError, EOFError, OSError) as exc:
        raise ScanFailed(f"BLE scan failed: {type(exc).__name__}: {str(exc)[:120]}") from exc
    if device is None:
        raise BoxNotFound(f"no edgebox found within {timeout:.0f} s")
    return device


class BleCentralLink:
    """Phone-side DatagramLink over one BLE connection."""

    def __init__(self, client: BleakClient, info: LinkInfo, mtu: int) -> None:
        self._client = client
        self.info = info
        self._mtu = mtu
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._closed_reason: str | None = None
        self._rx_char: Any = None

    @property
    def mtu(self) -> int:
        return self._mtu

    @property
    def peer(self) -> str:
        return str(self._client.address)

    @property
    def client(self) -> BleakClient:
        return self._client

    @property
    def connected(self) -> bool:
        return self._closed_reason is None and bool(self._client.is_connected)

    async def send(self, datagram: bytes) -> None:
        if self._closed_reason is not None:
            raise LinkClosed(f"BLE link closed ({self._closed_reason})")
        if len(datagram) > self._mtu:
            raise ValueError(f"datagram of {len(datagram)} bytes exceeds link MTU {self._mtu}")
        try:
            await self._client.write_gatt_char(self._rx_char, bytes(datagram), response=False)
        except (BleakError, EOFError, OSError) as exc:
            self._end("write failed")
            raise LinkClosed("BLE write failed; link closed") from exc

    async def recv(self) -> bytes:
        item = await self._queue.get()
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)
            raise LinkClosed(f"BLE link closed ({self._closed_reason})")
        assert isinstance(item, bytes)
        return item

    async def close(self) -> None:
        self._end("closed locally")
        with contextlib.suppress(BleakError, EOFError, OSError, TimeoutError):
            await self._client.disconnect()

    def _deliver(self, datagram: bytes) -> None:
        if self._closed_reason is None:
            self._queue.put_nowait(datagram)

    def _end(self, reason: str) -> None:
        if self._closed_reason is None:
            self._closed_reason = reason
            self._queue.put_nowait(_CLOSED)


async def connect(
    device: Any,
    *,
    adapter: str | None = None,
    box_id: str | None = None,
    timeout: float = 20.0,
    on_disconnect: Callable[[], None] | None = None,
) -> BleCentralLink:
    """Connect to a box (a BLEDevice from find_box, or an address) and open the datagram link."""
    link_box: list[BleCentralLink] = []
    early: list[bytes] = []
    tag_holder: list[bytes] = []

    def disconnected(_client: BleakClient) -> None:
        if link_box:
            link_box[0]._end("phone or box disconnected")
        if on_disconnect is not None:
            on_disconnect()

    def notified(_char: Any, data: bytearray) -> None:
        if not tag_holder:
            early.append(bytes(data))
            return
        datagram = split_notification(bytes(data), tag_holder[0])
        if datagram is not None and link_box:
            link_box[0]._deliver(datagram)

    kwargs: dict[str, Any] = {"timeout": timeout, "disconnected_callback": disconnected}
    if adapter is not None:
        kwargs["bluez"] = {"adapter": adapter}
    client = BleakClient(device, **kwargs)
    try:
        await client.connect()
        await client.start_notify(TX_UUID, notified)
        info = decode_info(bytes(await client.read_gatt_char(INFO_UUID)))
    except (BleakError, TimeoutError, EOFError, OSError) as exc:
        with contextlib.suppress(Exception):
            await client.disconnect()
        raise ConnectFailed(f"BLE connect failed: {type(exc).__name__}: {str(exc)[:120]}") from exc
    except BleError:
        with contextlib.suppress(Exception):
            await client.disconnect()
        raise
    if box_id is not None and info.box.box_id != box_id:
        with contextlib.suppress(Exception):
            await client.disconnect()
        raise WrongBox("connected box has a different box id")
    rx_char = client.services.get_characteristic(RX_UUID)
    if rx_char is None:
        await client.disconnect()
        raise ConnectFailed("box lacks the RX characteristic")
    # The box reads the ATT MTU of this very connection from BlueZ's options, so INFO's figure is
    # authoritative; bleak's cached characteristic MTU can still say 23 right after a reconnect.
    att_mtu = int(rx_char.max_write_without_response_size) + 3
    mtu = min(info.mtu, datagram_size(att_mtu)) if att_mtu > 23 else info.mtu
    link = BleCentralLink(client, info, mtu)
    link._rx_char = rx_char
    link_box.append(link)
    tag_holder.append(info.tag)
    for value in early:
        datagram = split_notification(value, info.tag)
        if datagram is not None:
            link._deliver(datagram)
    if not client.is_connected:
        link._end("disconnected during setup")
    log.info("ble_central_link_open", peer=link.peer, mtu=link.mtu)
    return link
