"""Unix-domain SOCK_SEQPACKET transport: datagram links between processes on one machine.

Used by the command-line phone and box for development and the demo when no Bluetooth is around.
SEQPACKET keeps datagram boundaries and order like GATT writes/notifications; the socket file is
created 0600 so only the box's user can connect. The MTU is a parameter (default 244, a typical
BLE payload) so the framing behaves as it would over the air.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
from pathlib import Path

from edgebox.transport.base import DatagramLink, LinkBase, LinkClosed

_ids = itertools.count(1)
DEFAULT_MTU = 244


class SeqpacketLink(LinkBase):
    def __init__(self, sock: socket.socket, mtu: int, peer: str) -> None:
        super().__init__(mtu, peer)
        sock.setblocking(False)
        self._sock = sock
        self._closed = False

    async def send(self, datagram: bytes) -> None:
        if self._closed:
            raise LinkClosed("link is closed")
        self._check_size(datagram)
        try:
            await asyncio.get_running_loop().sock_sendall(self._sock, datagram)
        except OSError:
            self._closed = True
            raise LinkClosed("peer went away") from None

    async def recv(self) -> bytes:
        if self._closed:
            raise LinkClosed("link is closed")
        try:
            data = await asyncio.get_running_loop().sock_recv(self._sock, self._mtu + 1)
        except OSError:
            data = b""
        if not data:
            self._closed = True
            raise LinkClosed("peer closed the link")
        return data

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
        with contextlib.suppress(OSError):
            self._sock.close()


async def connect(path: Path, mtu: int = DEFAULT_MTU) -> SeqpacketLink:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, str(path))
    except OSError as exc:
        sock.close()
        raise LinkClosed(f"cannot connect to box socket {path} ({exc.strerror})") from None
    return SeqpacketLink(sock, mtu, f"unix:{path.name}")


class SeqpacketListener:
    """`stop_accepting()` closes the listening socket and removes its file (a phone connecting then
    gets "connection refused"; accepted links are their own sockets and go on); `close()` also
    closes the links it accepted."""

    def __init__(self, path: Path, mtu: int = DEFAULT_MTU) -> None:
        self.path = path
        self._mtu = mtu
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old = os.umask(0o177)
        try:
            self._sock.bind(str(path))
        finally:
            os.umask(old)
        self._sock.listen(16)
        self._sock.setblocking(False)
        self._accepting = True
        self._waiter: asyncio.Future[tuple[socket.socket, object]] | None = None
        self._links: list[SeqpacketLink] = []

    @property
    def stopped_accepting(self) -> bool:
        return not self._accepting

    async def accept(self) -> DatagramLink:
        if not self._accepting:
            raise LinkClosed("box socket is not accepting links")
        waiter = self._waiter = asyncio.ensure_future(asyncio.get_running_loop().sock_accept(self._sock))
        try:
            conn, _ = await waiter
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self.stopped_accepting and not (task is not None and task.cancelling()):
                raise LinkClosed("box socket is not accepting links") from None
            raise
        except OSError:
            raise LinkClosed("box socket is closed") from None
        finally:
            self._waiter = None
        link = SeqpacketLink(conn, self._mtu, f"unix-peer-{next(_ids)}")
        self._links = [x for x in self._links if not x._closed]
        self._links.append(link)
        return link

    async def stop_accepting(self) -> None:
        if not self._accepting:
            return
        self._accepting = False
        if self._waiter is not None:
            self._waiter.cancel()  # the event loop stops watching the socket before it is closed
            await asyncio.gather(self._waiter, return_exceptions=True)
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def close(self) -> None:
        await self.stop_accepting()
        links, self._links = self._links, []
        for link in links:
            await link.close()
