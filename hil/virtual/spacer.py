"""Idle "spacer" connections that make every phone's connection handle to the box unique (btvirt only).

    python hil/virtual/spacer.py --plan "hci2>hci5;hci3>hci6,hci5;hci4>hci7,hci6,hci5"

Why: btvirt (BlueZ 5.66 and still in master, emulator/btdev.c le_conn_complete and
le_ext_conn_complete) tells the PERIPHERAL the CENTRAL's connection handle. Every btvirt central
allocates 0x002a for its first connection, so two phones connected to the box at once both appear
to the box's kernel as handle 0x002a: sysfs "hci0:42 already exists", mis-routed ACL data, and a
kernel list corruption BUG that kills bluetoothd at the next disconnect. A central that already
holds k connections gets 0x002a + k for the next one. So phone i (0-based) first opens i idle
connections to spare controllers; then the handles the box sees are 0x2a, 0x2b, ... and consistent.
The spare peripherals have the same problem, hence the plan's order: each spare only ever receives
connections whose central-side handles differ (central j's n-th spacer goes to the spare that has
not yet seen handle 0x2a + n). This is a property of the emulator, not of the box; real controllers
allocate handles properly, and the real tier does not use it.

Each spare runs the real peripheral (edgebox.ble.peripheral); the centrals are bleak. After any
loss (e.g. a bluetoothd restart) every spacer link is dropped and the plan is replayed in order.
Prints {"event": "spacer", "connected": bool} when the whole plan is up / broken.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edgebox.ble.central import BleCentralLink, connect, find_box
from edgebox.ble.layout import BleError, BoxInfo
from edgebox.ble.peripheral import BlePeripheral, ListenerState, PeripheralConfig
from edgebox.log import configure_logging
from edgebox.transport.base import LinkClosed


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def parse_plan(text: str) -> list[tuple[str, list[str]]]:
    plan = []
    for item in filter(None, text.split(";")):
        central, peripherals = item.split(">")
        plan.append((central, peripherals.split(",")))
    return plan


async def establish(plan: list[tuple[str, list[str]]]) -> list[BleCentralLink]:
    links: list[BleCentralLink] = []
    try:
        for central, peripherals in plan:
            for peripheral in peripherals:
                device = await find_box(adapter=central, name=f"ebx-sp-{peripheral}", timeout=20)
                links.append(await connect(device, adapter=central, timeout=20))
    except BaseException:
        for link in links:
            await link.close()
        raise
    return links


async def amain(args: argparse.Namespace) -> None:
    plan = parse_plan(args.plan)
    spares = sorted({p for _, ps in plan for p in ps})
    async with contextlib.AsyncExitStack() as stack:
        boxes = []
        for spare in spares:
            config = PeripheralConfig(
                box=BoxInfo(1, f"spacer-{spare}", bytes(32)),
                adapter=spare,
                name=f"ebx-sp-{spare}",
                advertisement_instances=2,
                root=f"/org/edgebox/spacer/{spare}",
            )
            boxes.append(await stack.enter_async_context(BlePeripheral(config)))
        while True:
            for box in boxes:
                await box.wait_state(ListenerState.ADVERTISING)
            try:
                links = await establish(plan)
            except BleError as exc:
                emit("spacer_error", error=str(exc))
                continue
            emit("spacer", connected=True)
            waits = [asyncio.ensure_future(link.recv()) for link in links]
            done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            for task in done:
                with contextlib.suppress(BleError, LinkClosed):
                    task.result()
            emit("spacer", connected=False)
            for link in links:
                await link.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plan", required=True, help='"central>spare,spare;central>spare"')
    args = parser.parse_args()
    configure_logging("warning")
    asyncio.run(amain(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
