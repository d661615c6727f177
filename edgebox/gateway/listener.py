"""The gateway's TLS listener: bounded memory before authentication.

Theory of operation: a connection costs memory from the moment it is accepted, long before a
certificate proves anything, so this layer decides what an unauthenticated peer can hold:
* **Small TLS buffers.** CPython's asyncio TLS layer (`asyncio.sslproto.SSLProtocol`) allocates a
  256 KiB read buffer per connection at accept time — 1,000 silent TCP connections cost ~290 MB.
  `SmallBufferTLS` is the same protocol with a 16 KiB buffer (one TLS record), which is all a read
  ever needs; the listener builds it itself (a plain `create_server` whose protocol is the TLS layer),
  which is exactly what `loop.create_server(ssl=...)` does inside.
* **Caps.** At most `max_connections` open connections in total and `max_connections_per_source` per
  source address; a connection over a cap is aborted at accept, before any TLS work.
* **A short handshake deadline** (`handshake_timeout_s`): a peer that sends nothing, or stalls the
  handshake, is dropped after seconds, not the 60 s asyncio default.
* **Memory goes back.** Freed per-connection allocations sit in glibc's heap; after a flood has closed,
  `release_memory()` (called by the gateway's sweep when the connection count has fallen a lot) asks
  glibc to return free pages to the kernel (`malloc_trim`), so RSS comes back down.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import ssl
from asyncio import sslproto
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgebox.log import get_logger

log = get_logger("edgebox.gateway.listener")

TLS_READ_BUFFER = 16 * 1024


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    max_connections: int = 4096
    max_connections_per_source: int = 256
    handshake_timeout_s: float = 3.0


@dataclass(slots=True)
class ConnectionCounts:
    total: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    high_water: int = 0


class SmallBufferTLS(sslproto.SSLProtocol):
    """asyncio's TLS protocol with a one-record read buffer and connection accounting."""

    max_size = TLS_READ_BUFFER

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        app_protocol: asyncio.BaseProtocol,
        ctx: ssl.SSLContext,
        limits: ListenerLimits,
        counts: ConnectionCounts,
    ) -> None:
        waiter: asyncio.Future[None] = loop.create_future()
        waiter.add_done_callback(_retrieve)
        super().__init__(
            loop,
            app_protocol,
            ctx,
            waiter,
            server_side=True,
            ssl_handshake_timeout=limits.handshake_timeout_s,  # type: ignore[arg-type]
        )
        self._limits = limits
        self._counts = counts
        self._source: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        source = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        c, lim = self._counts, self._limits
        if c.total >= lim.max_connections or c.by_source.get(source, 0) >= lim.max_connections_per_source:
            c.refused += 1
            if c.refused == 1 or c.refused % 1000 == 0:
                log.warning("connection_refused_cap", refused_total=c.refused, open=c.total)
            assert isinstance(transport, asyncio.Transport)
            transport.abort()
            return
        self._source = source
        c.total += 1
        c.high_water = max(c.high_water, c.total)
        c.by_source[source] = c.by_source.get(source, 0) + 1
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._source is None:
            return  # refused at accept: nothing was started
        c = self._counts
        c.total -= 1
        left = c.by_source.get(self._source, 1) - 1
        if left <= 0:
            c.by_source.pop(self._source, None)
        else:
            c.by_source[self._source] = left
        self._source = None
        super().connection_lost(exc)


def _retrieve(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()  # handshake failures are expected from hostile peers: not logged as unhandled


async def serve_tls(
    app_protocol: Callable[[], asyncio.BaseProtocol],
    host: str,
    port: int,
    ctx: ssl.SSLContext,
    limits: ListenerLimits,
    counts: ConnectionCounts,
) -> asyncio.Server:
    loop = asyncio.get_running_loop()

    def protocol() -> SmallBufferTLS:
        return SmallBufferTLS(loop, app_protocol(), ctx, limits, counts)

    return await loop.create_server(protocol, host, port, reuse_address=True, backlog=1024)


_libc: Any = None


def release_memory() -> bool:
    """Return freed heap pages to the kernel (glibc); False where that is not available."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
        except OSError:
            _libc = False
    if not _libc or not hasattr(_libc, "malloc_trim"):
        return False
    _libc.malloc_trim(0)
    return True
