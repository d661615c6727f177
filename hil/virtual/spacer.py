"""Keeps one idle BLE connection hci<central> -> hci<peripheral> so that central's next handle differs.

    python hil/virtual/spacer.py --central hci2 --peripheral hci3

Why: btvirt (BlueZ 5.66 and still in master, emulator/btdev.c le_conn_complete and
le_ext_conn_complete) tells the PERIPHERAL the CENTRAL's connection handle. Every btvirt central
allocates 0x002a for its first connection, so two phones connected to the box at once both appear
to the box's kernel as handle 0x002a: sysfs "hci0:42 already exists", mis-routed ACL data, and a
kernel list corruption BUG that kills bluetoothd at the next disconnect. A central that already
holds one connection gets 0x002b for the next, so giving the second phone one idle "spacer"
connection to a spare controller makes every handle the box sees unique and consistent.
This is a property of the emulator, not of the box; real controllers allocate handles properly.

The spacer runs the real peripheral (edgebox.ble.peripheral) on the spare controller and a bleak
central on the phone's controller, reconnects after any loss (e.g. a bluetoothd restart), and prints
{"event": "spacer", "connected": bool} lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edgebox.ble.central import connect, find_box
from edgebox.ble.layout import BleError, BoxInfo
from edgebox.ble.peripheral import BlePeripheral, ListenerState, PeripheralConfig
from edgebox.log import configure_logging
from edgebox.transport.base import LinkClosed


def emit(connected: bool) -> None:
    print(json.dumps({"event": "spacer", "connected": connected}), flush=True)


async def amain(args: argparse.Namespace) -> None:
    config = PeripheralConfig(
        box=BoxInfo(1, "spacer", bytes(32)),
        adapter=args.peripheral,
        name="ebx-spacer",
        advertisement_instances=2,
        root="/org/edgebox/spacer",
    )
    async with BlePeripheral(config) as peripheral:
        while True:
            await peripheral.wait_state(ListenerState.ADVERTISING)
            try:
                device = await find_box(adapter=args.central, name="ebx-spacer", timeout=20)
                link = await connect(device, adapter=args.central, timeout=20)
            except BleError as exc:
                print(json.dumps({"event": "spacer_error", "error": str(exc)}), flush=True)
                continue
            emit(True)
            try:
                while True:
                    await link.recv()
            except (BleError, LinkClosed):
                pass
            emit(False)
            await link.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--central", required=True)
    parser.add_argument("--peripheral", required=True)
    args = parser.parse_args()
    configure_logging("warning")
    asyncio.run(amain(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
