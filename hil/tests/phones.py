"""Phone-side helpers for the HIL tests: open a BLE link to the box, echo and bulk patterns."""

from __future__ import annotations

import asyncio
import json
import os
import struct
from typing import Any

from edgebox.ble.central import BleCentralLink, connect, find_box
from edgebox.transport.base import DatagramLink

BLAST = struct.Struct(">BIH")


async def open_link(
    hil: Any, adapter: str, *, box_id: str | None = None, attempts: int = 1
) -> BleCentralLink:
    """Scan for the box from `adapter` and connect. A connect that fails on the simulated link is
    retried a bounded number of times (a fresh scan each time); the failures are reported."""
    last: Exception | None = None
    for _ in range(attempts):
        device = await find_box(adapter=adapter, name=hil.box_name, address=hil.box_address, timeout=20)
        try:
            return await connect(device, adapter=adapter, box_id=box_id or hil.box_id, timeout=20)
        except Exception as exc:
            last = exc
            print(f"connect from {adapter} failed: {exc!r}")
    assert last is not None
    raise last


async def echo(link: DatagramLink, payload: bytes, timeout: float = 20) -> bytes:
    await link.send(b"E" + payload)
    return await asyncio.wait_for(link.recv(), timeout)


async def echo_stream(link: DatagramLink, total: int, *, seed: int = 0, timeout: float = 120) -> int:
    """Send `total` bytes as maximal echo datagrams while receiving; check every echo. Returns datagrams."""
    size = link.mtu - 1
    chunks = [os.urandom(size) if seed == 0 else bytes([seed]) * size for _ in range(-(-total // size))]

    async def sender() -> None:
        for chunk in chunks:
            await link.send(b"E" + chunk)

    async def receiver() -> None:
        for i, chunk in enumerate(chunks):
            got = await link.recv()
            assert got == b"E" + chunk, f"echo {i} of {len(chunks)} differs"

    await asyncio.wait_for(asyncio.gather(sender(), receiver()), timeout)
    return len(chunks)


async def blast(link: DatagramLink, count: int, size: int, timeout: float = 120) -> int:
    """Ask the box for `count` datagrams of `size` bytes; check order. Returns bytes received."""
    await link.send(BLAST.pack(ord("B"), count, size))
    received = 0

    async def rx() -> None:
        nonlocal received
        for seq in range(count):
            got = await link.recv()
            assert got[:1] == b"D" and int.from_bytes(got[1:5], "big") == seq, f"datagram {seq} out of order"
            received += len(got)

    await asyncio.wait_for(rx(), timeout)
    return received


async def stats(link: DatagramLink) -> dict[str, Any]:
    await link.send(b"S")
    result: dict[str, Any] = json.loads(await asyncio.wait_for(link.recv(), 20))
    return result
