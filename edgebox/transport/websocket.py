"""WebSocket development transport: a `DatagramLink`/`LinkListener` over aiohttp WebSockets.

Theory of operation: one binary WebSocket message is one datagram, in order (TCP below), so the
framing behaves exactly as over GATT; the link declares an MTU (default 244, a typical BLE payload)
and refuses larger datagrams on send, and the framer refuses larger ones received (`oversize`).
The box side (`WebSocketListener`) runs a tiny aiohttp app with one route, `/link`; each upgraded
connection becomes a link handed out by `accept()`, and the HTTP handler stays parked until that
link closes. `connect(url)` is the Python phone side (tests, interop). The web phone's twin is
`edgebox/phone_web/static/lib/transport/websocket.js`.

This transport exists so the web client can be developed and tested in a browser against the real
box without Bluetooth. It is never enabled by the shipped configuration (`[dev] websocket`, off by
default). It adds no security and needs none: the session above it is end-to-end authenticated and
encrypted whatever carries it, and it uses no cookies or ambient credentials, so a cross-site page
that opens the socket gains nothing it could not get from the radio. Text frames, oversized frames
(`max_msg_size`) and protocol errors close the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl

import aiohttp
from aiohttp import web

from edgebox.transport.base import DatagramLink, LinkBase, LinkClosed

DEFAULT_MTU = 244
PATH = "/link"
# A frame larger than this is a protocol violation (aiohttp closes the socket with 1009).
_MAX_FRAME = 4096
_ids = itertools.count(1)

_WS = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


class WebSocketLink(LinkBase):
    """One datagram link over an open WebSocket (server or client end)."""

    def __init__(self, ws: _WS, mtu: int, peer: str, session: aiohttp.ClientSession | None = None) -> None:
        super().__init__(mtu, peer)
        self._ws = ws
        self._session = session
        self._closed = asyncio.Event()

    async def send(self, datagram: bytes) -> None:
        self._check_size(datagram)
        if self._closed.is_set() or self._ws.closed:
            raise LinkClosed("websocket link is closed")
        try:
            await self._ws.send_bytes(bytes(datagram))
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            await self.close()
            raise LinkClosed("websocket peer went away") from None

    async def recv(self) -> bytes:
        if self._closed.is_set():
            raise LinkClosed("websocket link is closed")
        msg = await self._ws.receive()
        if msg.type is aiohttp.WSMsgType.BINARY:
            data: bytes = msg.data
            return data
        await self.close()
        if msg.type is aiohttp.WSMsgType.TEXT:
            raise LinkClosed("peer sent a text frame on the datagram socket")
        raise LinkClosed("websocket peer closed the link")

    async def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with contextlib.suppress(Exception):
            await self._ws.close()
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._session.close()

    async def wait_closed(self) -> None:
        await self._closed.wait()


class WebSocketListener:
    """Box side: serves `ws[s]://host:port/link`; `accept()` yields one link per connection."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        mtu: int = DEFAULT_MTU,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 16,
    ) -> None:
        self.host = host
        self.port = port
        self._mtu = mtu
        self._ssl = ssl_context
        # One slot more than the backlog: room for the wake-up of stop_accepting().
        self._pending: asyncio.Queue[WebSocketLink | None] = asyncio.Queue(backlog + 1)
        self._backlog = backlog
        self._links: set[WebSocketLink] = set()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._accepting = True

    def routes(self) -> list[web.RouteDef]:
        """The route, for mounting the endpoint in another aiohttp app."""
        return [web.get(PATH, self._handle)]

    async def start(self) -> None:
        app = web.Application()
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = self._site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._ssl)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    @property
    def url(self) -> str:
        scheme = "wss" if self._ssl else "ws"
        return f"{scheme}://{self.host}:{self.port}{PATH}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=_MAX_FRAME, heartbeat=None, autoping=True)
        await ws.prepare(request)
        if not self._accepting:
            await ws.close(code=1001, message=b"box stopping")
            return ws
        if self._pending.qsize() >= self._backlog:
            await ws.close(code=1013, message=b"box busy")
            return ws
        link = WebSocketLink(ws, self._mtu, f"ws-peer-{next(_ids)}")
        self._pending.put_nowait(link)
        self._links.add(link)
        try:
            await link.wait_closed()
        finally:
            self._links.discard(link)
        return ws

    async def accept(self) -> DatagramLink:
        if not self._accepting:
            raise LinkClosed("websocket listener is not accepting links")
        link = await self._pending.get()
        if link is None:
            self._pending.put_nowait(None)  # wake every other waiter too
            raise LinkClosed("websocket listener is not accepting links")
        return link

    async def stop_accepting(self) -> None:
        """Stop listening (new connections are refused by the OS); accepted links go on."""
        if not self._accepting:
            return
        self._accepting = False
        if self._site is not None:
            with contextlib.suppress(Exception):
                await self._site.stop()
            self._site = None
        while not self._pending.empty():  # upgraded but never accepted: closed
            link = self._pending.get_nowait()
            if link is not None:
                await link.close()
        self._pending.put_nowait(None)

    async def close(self) -> None:
        await self.stop_accepting()
        for link in list(self._links):
            await link.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def connect(
    url: str,
    mtu: int = DEFAULT_MTU,
    *,
    ssl_context: ssl.SSLContext | bool | None = None,
    timeout: float = 10.0,
) -> WebSocketLink:
    """Phone side: open a link to a box's WebSocket endpoint."""
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(
            url,
            max_msg_size=_MAX_FRAME,
            autoping=True,
            ssl=ssl_context if ssl_context is not None else True,
            timeout=aiohttp.ClientWSTimeout(ws_close=timeout),
        )
    except (aiohttp.ClientError, OSError) as exc:
        await session.close()
        raise LinkClosed(f"cannot reach the box websocket ({type(exc).__name__})") from None
    return WebSocketLink(ws, mtu, f"ws:{url}", session=session)
