"""Real-component fixtures for the web phone tests: a static HTTP server for the bundle, Debian's
Chromium through Playwright (never a downloaded browser), and a real box server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from edgebox import phone_web
from edgebox.box.responder import EchoResponder
from edgebox.box.server import BoxServer
from edgebox.box.state import BoxState, init_state
from edgebox.session.invite import PairingInvite
from edgebox.transport.websocket import WebSocketListener

REPO = Path(__file__).resolve().parents[2]
TEST_JS = Path(__file__).resolve().parent / "js"
VECTORS = REPO / "docs" / "protocol-vectors.json"
CHROMIUM = "/usr/bin/chromium"


async def serve_static(extra: list[web.RouteDef] | None = None) -> tuple[web.AppRunner, str]:
    """The bundle at /phone/ (the same routes the admin server uses), test modules at /test/."""
    app = web.Application()
    app.add_routes(phone_web.routes())
    app.add_routes(phone_web.routes("/test/", TEST_JS))
    vectors = VECTORS.read_bytes()

    async def vectors_json(_r: web.Request) -> web.Response:
        return web.Response(body=vectors, content_type="application/json")

    app.add_routes([web.get("/vectors.json", vectors_json), *(extra or [])])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def launch(*, bluetooth: bool = False, extra_args: tuple[str, ...] = ()) -> tuple[Any, Browser]:
    if not Path(CHROMIUM).exists():
        raise RuntimeError("Debian's chromium is missing: run `make unit` (APT_TEST installs it)")
    pw = await async_playwright().start()
    args = list(extra_args)
    if bluetooth:
        args.append("--enable-features=WebBluetooth,WebBluetoothNewPermissionsBackend")
    browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
    return pw, browser


@dataclass
class Web:
    base: str
    browser: Browser
    page: Page
    errors: list[str]

    async def module(self, path: str, expr: str, *args: Any) -> Any:
        """Import a module in the page and evaluate `expr` with it bound to `m` (and `args`)."""
        return await self.page.evaluate(
            f"async (args) => {{ const m = await import({json.dumps(path)}); return await ({expr}); }}",
            list(args),
        )


@dataclass
class Box:
    """The real Python box: encrypted store, phone registry, session server, WebSocket listener."""

    state: BoxState
    server: BoxServer
    listener: WebSocketListener
    task: asyncio.Task[None]

    def invite(self, ttl: int = 300) -> PairingInvite:
        ident = self.state.identity
        return self.state.registry.create_invite(ident.box_id, ident.key_hash, time.time(), ttl=ttl)

    @property
    def url(self) -> str:
        return self.listener.url


async def start_box(root: Path, responder: object | None = None, mtu: int = 244) -> Box:
    state = init_state(root)
    server = BoxServer(state.identity, state.registry, responder or EchoResponder(piece=4))  # type: ignore[arg-type]
    listener = WebSocketListener("127.0.0.1", 0, mtu=mtu)
    await listener.start()
    task = asyncio.create_task(server.serve(listener))
    return Box(state, server, listener, task)


async def stop_box(box: Box) -> None:
    box.task.cancel()
    await asyncio.gather(box.task, return_exceptions=True)
    await box.listener.close()
    box.state.close()


async def web_page(bluetooth: bool = False) -> AsyncIterator[Web]:
    runner, base = await serve_static()
    pw, browser = await launch(bluetooth=bluetooth)
    try:
        context = await browser.new_context()
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(base + "/phone/")
        yield Web(base, browser, page, errors)
    finally:
        await browser.close()
        await pw.stop()
        await runner.cleanup()


@dataclass
class SlowEcho:
    """Echoes the question word by word with a pause: a stream the page must show as it arrives."""

    pause: float = 0.03
    repeat: int = 1

    async def respond(self, prompt: Any, ctx: Any) -> AsyncIterator[Any]:
        from edgebox.session.messages import Done, Usage

        text = next((m.content for m in reversed(prompt.messages) if m.role == "user"), "")
        words = (text + " ") * self.repeat
        for word in words.split(" "):
            if word:
                yield word + " "
                await asyncio.sleep(self.pause)
        yield Done(id=prompt.id, source="echo", usage=Usage(1, 1, 2), trace=ctx.trace)


class TamperProxy:
    """A WebSocket relay between page and box that can flip one bit of the next box->phone data
    fragment (a man in the middle who cannot read the session, but can damage it)."""

    def __init__(self, box_url: str) -> None:
        self.box_url = box_url
        self.listener = WebSocketListener("127.0.0.1", 0)
        self.flip_next = False
        self.flipped = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.listener.start()
        self._tasks.add(asyncio.create_task(self._accept()))

    @property
    def url(self) -> str:
        return self.listener.url

    async def _accept(self) -> None:
        from edgebox.transport import websocket

        while True:
            page_end = await self.listener.accept()
            box_end = await websocket.connect(self.box_url)
            self._tasks.add(asyncio.create_task(self._pump(page_end, box_end, tamper=False)))
            self._tasks.add(asyncio.create_task(self._pump(box_end, page_end, tamper=True)))

    async def _pump(self, src: Any, dst: Any, *, tamper: bool) -> None:
        from edgebox.transport.base import LinkClosed

        try:
            while True:
                d = bytearray(await src.recv())
                if tamper and self.flip_next and d[0] & 0x08 and len(d) > 4:
                    d[-1] ^= 0x01
                    self.flip_next = False
                    self.flipped += 1
                await dst.send(bytes(d))
        except LinkClosed:
            await dst.close()

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.listener.close()
