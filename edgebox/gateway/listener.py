"""The gateway's TLS listener: bounded memory before authentication.

Theory of operation: a connection costs memory from the moment it is accepted, long before a
certificate proves anything, so this layer decides what an unauthenticated peer can hold:
* **Nothing before the first byte.** A new connection is an `AcceptGate` (no TLS object, no HTTP
  protocol) until the peer sends data; then the transport is handed to the TLS layer. OpenSSL
  allocates its record buffers as soon as a handshake starts (~40 KiB), so a silent peer must not get
  that far.
* **Small TLS buffers.** CPython's asyncio TLS layer (`asyncio.sslproto.SSLProtocol`) allocates a
  256 KiB read buffer per connection — 1,000 silent TCP connections cost ~290 MB, 2,000 idle TLS
  connections ~540 MB. `SmallBufferTLS` is the same protocol with a 16 KiB buffer (one TLS record),
  which is all a read ever needs; the listener builds it itself, exactly as
  `loop.create_server(ssl=...)` does inside.
* **Caps.** At most `max_connections` open connections in total and `max_connections_per_source` per
  source address; a connection over a cap is aborted at accept, before any TLS work.
* **A short handshake deadline** (`handshake_timeout_s`): a peer that sends nothing, or stalls the
  handshake, is dropped after seconds, not the 60 s asyncio default.
* **Memory goes back.** A closed connection's objects form reference cycles that only the cyclic GC
  frees, and freed allocations sit in glibc's heap; after a flood has closed, `release_memory()`
  (called by the gateway's sweep when the connection count has fallen a lot) collects the cycles and
  asks glibc to return free pages to the kernel (`malloc_trim`), so RSS comes back down.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
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
    """asyncio's TLS protocol with a one-record read buffer; releases its connection slot when lost."""

    max_size = TLS_READ_BUFFER

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        app_protocol: asyncio.BaseProtocol,
        ctx: ssl.SSLContext,
        handshake_timeout_s: float,
        release: Callable[[], None],
    ) -> None:
        waiter: asyncio.Future[None] = loop.create_future()
        waiter.add_done_callback(_retrieve)
        super().__init__(
            loop,
            app_protocol,
            ctx,
            waiter,
            server_side=True,
            ssl_handshake_timeout=handshake_timeout_s,  # type: ignore[arg-type]
        )
        self._release = release

    def connection_lost(self, exc: BaseException | None) -> None:
        self._release()
        super().connection_lost(exc)


class AcceptGate(asyncio.Protocol):
    """What a new connection is until it sends its first byte: a few hundred bytes, no TLS state.

    Enforces the caps at accept and the handshake deadline while the peer is silent; on the first data
    it hands the transport to a `SmallBufferTLS` (OpenSSL's per-connection buffers and the HTTP
    protocol object are only made for peers that actually start a handshake).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        make_app: Callable[[], asyncio.BaseProtocol],
        ctx: ssl.SSLContext,
        limits: ListenerLimits,
        counts: ConnectionCounts,
    ) -> None:
        self._loop = loop
        self._make_app = make_app
        self._ctx = ctx
        self._limits = limits
        self._counts = counts
        self._transport: asyncio.Transport | None = None
        self._source: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._started = 0.0
        self._handed_over = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        source = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        c, lim = self._counts, self._limits
        if c.total >= lim.max_connections or c.by_source.get(source, 0) >= lim.max_connections_per_source:
            c.refused += 1
            if c.refused == 1 or c.refused % 1000 == 0:
                log.warning("connection_refused_cap", refused_total=c.refused, open=c.total)
            transport.abort()
            return
        self._transport = transport
        self._source = source
        c.total += 1
        c.high_water = max(c.high_water, c.total)
        c.by_source[source] = c.by_source.get(source, 0) + 1
        self._started = self._loop.time()
        self._timer = self._loop.call_later(lim.handshake_timeout_s, transport.abort)

    def _release(self) -> None:
        if self._source is None:
            return
        c = self._counts
        c.total -= 1
        left = c.by_source.get(self._source, 1) - 1
        if left <= 0:
            c.by_source.pop(self._source, None)
        else:
            c.by_source[self._source] = left
        self._source = None

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or self._handed_over:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._handed_over = True
        remaining = max(0.1, self._limits.handshake_timeout_s - (self._loop.time() - self._started))
        tls = SmallBufferTLS(self._loop, self._make_app(), self._ctx, remaining, self._release)
        transport.set_protocol(tls)
        tls.connection_made(transport)
        view = memoryview(data)
        while view and not transport.is_closing():
            buf = tls.get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            tls.buffer_updated(n)
            view = view[n:]

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self._handed_over:
            self._release()


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

    def protocol() -> AcceptGate:
        return AcceptGate(loop, app_protocol, ctx, limits, counts)

    return await loop.create_server(protocol, host, port, reuse_address=True, backlog=1024)


_libc: Any = None


def release_memory() -> bool:
    """Collect the connections' reference cycles (transport <-> protocol <-> handler: freed only by the
    cyclic GC, which may not run for a long time), then return free heap pages to the kernel (glibc);
    False where trimming is not available."""
    global _libc
    gc.collect()
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
