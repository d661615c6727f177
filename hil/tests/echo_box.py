"""A diagnostic BLE box: the real peripheral with a tiny echo service on every link.

    python hil/tests/echo_box.py --adapter hci0 --name ebx-echo --box-id hil-box

Used by the HIL tiers (virtual and on a real Pi) to test the transport without the session
protocol, and by `edgebox bench ble` for the raw notification figure. It lives with the HIL
tests, outside the transport package (edgebox/ble depends only on the transport seam and the
session below it). Datagram commands (first byte):

- b"E" + payload          -> the same datagram is sent back;
- b"B" + count:u32 + size:u16 -> the box sends `count` datagrams of `size` bytes, b"D" + seq:u32 +
  filler, as fast as back-pressure allows (a box->phone bulk transfer);
- b"S"                    -> one JSON datagram with the box's counters and listener state;
- anything else           -> counted as garbage and dropped.

Events go to stdout as JSON lines ({"event": "ready"|"state"|"link"|"closed", ...}) so a test that
started this process can follow the box side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import struct
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from a checkout

from edgebox.ble.layout import BoxInfo
from edgebox.ble.peripheral import BlePeripheral, ListenerState, PeripheralConfig
from edgebox.log import configure_logging
from edgebox.transport.base import DatagramLink, LinkClosed

BLAST = struct.Struct(">BIH")


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, sort_keys=True), flush=True)


class EchoBox:
    def __init__(self, peripheral: BlePeripheral) -> None:
        self.peripheral = peripheral
        self.counters = {"links": 0, "echoed": 0, "garbage": 0, "blasted": 0, "closed": 0}

    async def serve_link(self, link: DatagramLink) -> None:
        self.counters["links"] += 1
        emit("link", peer=link.peer, mtu=link.mtu)
        reason = "closed"
        try:
            while True:
                datagram = await link.recv()
                kind = datagram[:1]
                if kind == b"E":
                    await link.send(datagram)
                    self.counters["echoed"] += 1
                elif kind == b"B" and len(datagram) == BLAST.size:
                    _, count, size = BLAST.unpack(datagram)
                    size = max(5, min(size, link.mtu))
                    filler = bytes(size - 5)
                    for seq in range(count):
                        await link.send(b"D" + seq.to_bytes(4, "big") + filler)
                    self.counters["blasted"] += count
                elif kind == b"S":
                    stats = {
                        **self.counters,
                        **self.peripheral.stats,
                        "state": self.peripheral.state.value,
                        "open": len(self.peripheral.connections),
                    }
                    await link.send(json.dumps(stats, sort_keys=True).encode()[: link.mtu])
                else:
                    self.counters["garbage"] += 1
        except LinkClosed as exc:
            reason = exc.code
        finally:
            self.counters["closed"] += 1
            emit("closed", peer=link.peer, reason=reason)

    async def run(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        while True:
            link = await self.peripheral.accept()
            task = asyncio.create_task(self.serve_link(link))
            tasks.add(task)
            task.add_done_callback(tasks.discard)


async def amain(args: argparse.Namespace) -> int:
    config = PeripheralConfig(
        box=BoxInfo(protocol_version=1, box_id=args.box_id, box_key_hash=bytes(32)),
        adapter=args.adapter,
        name=args.name,
        advertisement_instances=args.adv_instances,
        use_acquire_notify=not args.no_acquire_notify,
    )
    peripheral = BlePeripheral(config, on_state=lambda s: emit("state", state=s.value))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with peripheral:
        state = await peripheral.wait_state(
            ListenerState.ADVERTISING, ListenerState.FAILED, ListenerState.ADAPTER_MISSING, timeout=30
        )
        emit("ready", state=state.value)
        box = EchoBox(peripheral)
        runner = asyncio.create_task(box.run())
        await stop.wait()
        runner.cancel()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hil/tests/echo_box.py", description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", default="hci0")
    parser.add_argument("--name", default="ebx-echo")
    parser.add_argument("--box-id", default="echo-box")
    parser.add_argument("--adv-instances", type=int, default=1)
    parser.add_argument("--no-acquire-notify", action="store_true", help="force the PropertiesChanged path")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
