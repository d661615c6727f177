"""One-call entry points for the CLIs: the box's BLE listener and a phone's BLE link.

listener = box_listener(box_id_hex, key_hash, PROTOCOL_VERSION, adapter="hci0", name="edgebox")
await server.serve(listener)                  # BlePeripheral is a LinkListener
link = await phone_link(adapter="hci1", box_id=box_id_hex)
session = await client.connect(link, keystore, paired_box)
"""

from __future__ import annotations

from edgebox.ble.central import BleCentralLink, connect, find_box
from edgebox.ble.layout import BoxInfo
from edgebox.ble.peripheral import BlePeripheral, PeripheralConfig


def box_listener(
    box_id: str,
    box_key_hash: bytes,
    protocol_version: int,
    *,
    adapter: str = "hci0",
    name: str = "edgebox",
    advertisement_instances: int = 1,
) -> BlePeripheral:
    """A not-yet-started BLE listener (`async with` it, or call start()/close())."""
    return BlePeripheral(
        PeripheralConfig(
            box=BoxInfo(protocol_version, box_id, box_key_hash),
            adapter=adapter,
            name=name,
            advertisement_instances=advertisement_instances,
        )
    )


async def phone_link(
    *,
    adapter: str | None = None,
    box_id: str | None = None,
    name: str | None = None,
    address: str | None = None,
    scan_timeout: float = 15.0,
    connect_timeout: float = 20.0,
) -> BleCentralLink:
    """Scan for a box (service UUID, optionally name/address), connect, check box id, open the link.

    Raises BoxNotFound, ScanFailed, ConnectFailed or WrongBox (all BleError, typed codes).
    """
    device = await find_box(adapter=adapter, name=name, address=address, timeout=scan_timeout)
    return await connect(device, adapter=adapter, box_id=box_id, timeout=connect_timeout)
