"""The transport seam: a datagram link and a listener that accepts links."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from edgebox.errors import EdgeboxError


class LinkClosed(EdgeboxError):
    """The link is gone (peer disconnected, adapter lost, closed locally)."""

    code = "link_closed"


@runtime_checkable
class DatagramLink(Protocol):
    """One phone<->box link that carries datagrams of at most `mtu` bytes, in order.

    `send` may wait (back-pressure) until the lower layer accepted the datagram; it never drops
    silently. `recv` returns the next datagram or raises LinkClosed. `peer` is a stable, printable
    identifier of the remote end for logs (a D-Bus device path, "loopback-N"), never a secret.
    """

    @property
    def mtu(self) -> int: ...

    @property
    def peer(self) -> str: ...

    async def send(self, datagram: bytes) -> None: ...

    async def recv(self) -> bytes: ...

    async def close(self) -> None: ...


class LinkBase:
    """What every concrete link shares: its datagram size, its peer label, and the size check."""

    def __init__(self, mtu: int, peer: str) -> None:
        self._mtu = mtu
        self._peer = peer

    @property
    def mtu(self) -> int:
        return self._mtu

    @property
    def peer(self) -> str:
        return self._peer

    def _check_size(self, datagram: bytes) -> None:
        if len(datagram) > self._mtu:
            raise ValueError(f"datagram of {len(datagram)} bytes exceeds link MTU {self._mtu}")


@runtime_checkable
class LinkListener(Protocol):
    """The box side: yields a new DatagramLink for each phone that connects.

    Shutting down is two steps, so that a graceful stop can finish the answers in flight:
    `stop_accepting()` takes no new links (stops advertising / listening; a phone that connects
    now, or whose link was not yet accepted, sees its link end) while the links already accepted
    go on; a pending or later `accept()` raises LinkClosed. `close()` then ends every link still
    open and releases the transport (socket file, Bluetooth adapter). Both are idempotent, and
    `close()` implies `stop_accepting()`.
    """

    async def accept(self) -> DatagramLink: ...

    async def stop_accepting(self) -> None: ...

    async def close(self) -> None: ...
