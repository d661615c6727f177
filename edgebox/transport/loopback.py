"""In-process loopback transport: two linked DatagramLink ends over asyncio queues.

Used by tests and the demo. It enforces the same contract as BLE: datagrams larger than `mtu` are
refused, `send` applies back-pressure (at most `depth` datagrams wait in each direction), and
closing either end makes the other end's `recv` and `send` raise LinkClosed, waking any waiter.
"""

from __future__ import annotations

import asyncio
import itertools

from edgebox.transport.base import DatagramLink, LinkBase, LinkClosed

_ids = itertools.count(1)
_CLOSED = object()


class _Pipe:
    """One direction: an unbounded queue whose data slots are bounded by a semaphore."""

    def __init__(self, depth: int) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.space = asyncio.Semaphore(depth)
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(_CLOSED)
            for _ in range(1024):  # wake every sender blocked on space
                self.space.release()


class LoopbackLink(LinkBase):
    def __init__(self, mtu: int, peer: str, inbox: _Pipe, outbox: _Pipe) -> None:
        super().__init__(mtu, peer)
        self._inbox = inbox
        self._outbox = outbox

    async def send(self, datagram: bytes) -> None:
        self._check_size(datagram)
        if not self._outbox.closed:
            await self._outbox.space.acquire()
        if self._outbox.closed:
            raise LinkClosed("loopback link is closed")
        self._outbox.queue.put_nowait(bytes(datagram))

    async def recv(self) -> bytes:
        item = await self._inbox.queue.get()
        if item is _CLOSED:
            self._inbox.queue.put_nowait(_CLOSED)  # every later recv fails too
            raise LinkClosed("loopback link is closed")
        self._inbox.space.release()
        assert isinstance(item, bytes)
        return item

    async def close(self) -> None:
        self._inbox.close()
        self._outbox.close()


def link_pair(mtu: int = 244, depth: int = 64) -> tuple[LoopbackLink, LoopbackLink]:
    """Return (phone_end, box_end) of a fresh loopback link."""
    n = next(_ids)
    to_box, to_phone = _Pipe(depth), _Pipe(depth)
    phone_end = LoopbackLink(mtu, f"loopback-{n}/box", inbox=to_phone, outbox=to_box)
    box_end = LoopbackLink(mtu, f"loopback-{n}/phone", inbox=to_box, outbox=to_phone)
    return phone_end, box_end


class LoopbackListener:
    """Box-side listener; `connect()` is what a phone calls to get its end.

    Like the real transports, `stop_accepting()` refuses new links (a phone connecting then gets a
    link that is already closed) and `close()` also ends the links it handed out."""

    def __init__(self, mtu: int = 244) -> None:
        self._mtu = mtu
        self._pending: asyncio.Queue[DatagramLink | None] = asyncio.Queue()
        self._links: list[DatagramLink] = []
        self._accepting = True

    @property
    def accepting(self) -> bool:
        return self._accepting

    def connect(self) -> LoopbackLink:
        phone_end, box_end = link_pair(self._mtu)
        if not self._accepting:
            box_end._inbox.close()
            box_end._outbox.close()
            return phone_end
        self.attach(box_end)
        return phone_end

    def attach(self, box_end: DatagramLink) -> None:
        """Hand the box an arbitrary link end (tests that speak raw datagrams)."""
        self._links = [link for link in self._links if not _is_closed(link)]
        self._links.append(box_end)
        self._pending.put_nowait(box_end)

    async def accept(self) -> DatagramLink:
        if not self._accepting:
            raise LinkClosed("loopback listener is not accepting links")
        link = await self._pending.get()
        if link is None:
            self._pending.put_nowait(None)  # wake every other waiter too
            raise LinkClosed("loopback listener is not accepting links")
        return link

    async def stop_accepting(self) -> None:
        if not self._accepting:
            return
        self._accepting = False
        while not self._pending.empty():  # connected but never accepted: the phone sees it end
            link = self._pending.get_nowait()
            if link is not None:
                await link.close()
        self._pending.put_nowait(None)

    async def close(self) -> None:
        await self.stop_accepting()
        links, self._links = self._links, []
        for link in links:
            await link.close()


def _is_closed(link: DatagramLink) -> bool:
    return isinstance(link, LoopbackLink) and link._inbox.closed and link._outbox.closed
