"""In-process loopback transport: two linked DatagramLink ends over asyncio queues.

Used by tests and the demo. It enforces the same contract as BLE: datagrams larger than `mtu` are
refused, `send` applies back-pressure through a bounded queue, and closing either end wakes the
other's `recv` with LinkClosed.
"""

from __future__ import annotations

import asyncio
import itertools

from edgebox.transport.base import DatagramLink, LinkClosed

_ids = itertools.count(1)
_CLOSED = object()


class LoopbackLink:
    def __init__(
        self, mtu: int, peer: str, inbox: asyncio.Queue[object], outbox: asyncio.Queue[object]
    ) -> None:
        self._mtu = mtu
        self._peer = peer
        self._inbox = inbox
        self._outbox = outbox
        self._closed = False

    @property
    def mtu(self) -> int:
        return self._mtu

    @property
    def peer(self) -> str:
        return self._peer

    async def send(self, datagram: bytes) -> None:
        if self._closed:
            raise LinkClosed("loopback link is closed")
        if len(datagram) > self._mtu:
            raise ValueError(f"datagram of {len(datagram)} bytes exceeds link MTU {self._mtu}")
        await self._outbox.put(bytes(datagram))

    async def recv(self) -> bytes:
        if self._closed:
            raise LinkClosed("loopback link is closed")
        item = await self._inbox.get()
        if item is _CLOSED:
            self._closed = True
            raise LinkClosed("peer closed the loopback link")
        assert isinstance(item, bytes)
        return item

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._outbox.put_nowait(_CLOSED)


def link_pair(mtu: int = 244, depth: int = 64) -> tuple[LoopbackLink, LoopbackLink]:
    """Return (phone_end, box_end) of a fresh loopback link."""
    n = next(_ids)
    a: asyncio.Queue[object] = asyncio.Queue(depth + 1)
    b: asyncio.Queue[object] = asyncio.Queue(depth + 1)
    return LoopbackLink(mtu, f"loopback-{n}/box", a, b), LoopbackLink(mtu, f"loopback-{n}/phone", b, a)


class LoopbackListener:
    """Box-side listener; `connect()` is what a phone calls to get its end."""

    def __init__(self, mtu: int = 244) -> None:
        self._mtu = mtu
        self._pending: asyncio.Queue[DatagramLink] = asyncio.Queue()

    def connect(self) -> LoopbackLink:
        phone_end, box_end = link_pair(self._mtu)
        self._pending.put_nowait(box_end)
        return phone_end

    async def accept(self) -> DatagramLink:
        return await self._pending.get()

    async def close(self) -> None:
        return None
