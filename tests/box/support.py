"""Helpers for the box tests: a daemon on loopback, a notify socket, a box config in a tmp dir."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from edgebox.box.config import BoxConfig, parse_box_config
from edgebox.box.daemon import BoxDaemon
from edgebox.box.notify import Notifier
from edgebox.box.textmodels import TextModels
from edgebox.phone import client
from edgebox.phone.client import PhoneSession
from edgebox.phone.keystore import PhoneKeystore
from edgebox.transport.loopback import LoopbackListener


def box_config(tmp: Path, **sections: dict[str, Any]) -> BoxConfig:
    doc: dict[str, Any] = {
        "box": {"state_dir": str(tmp / "box"), "dev_key_files": True},
        "ble": {"enabled": False},
    }
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    return parse_box_config(doc)


class NotifySocket:
    """The systemd side of sd_notify: a datagram socket that collects what the daemon sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def env(self, watchdog_usec: int | None = None) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": str(self.path)}
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        return env

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    async def wait_for(self, field: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(field in m.split("\n") for m in self.drain()):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{field} not received; got {self.messages}")

    def close(self) -> None:
        self.sock.close()


class RunningBox:
    def __init__(
        self, daemon: BoxDaemon, listener: LoopbackListener, task: asyncio.Task[None], tmp: Path
    ) -> None:
        self.daemon = daemon
        self.listener = listener
        self.task = task
        self.tmp = tmp
        self._n = 0

    async def pair(self, name: str = "phone") -> tuple[PhoneSession, PhoneKeystore]:
        invite = await self.daemon.control.create_invite()
        ks = PhoneKeystore.load_or_create(self.tmp / f"{name}.json")
        return await client.pair(self.listener.connect(), ks, invite), ks

    async def connect(self, ks: PhoneKeystore) -> PhoneSession:
        return await client.connect(self.listener.connect(), ks, ks.box(self.daemon.identity.box_id_hex))

    async def stop(self) -> None:
        self.daemon.request_stop()
        await asyncio.wait_for(self.task, 60)


@contextlib.asynccontextmanager
async def running_box(
    tmp: Path,
    cfg: BoxConfig,
    models: TextModels | None,
    notifier: Notifier | None = None,
    *,
    store_clock: Callable[[], float] | None = None,
) -> AsyncIterator[RunningBox]:
    listener = LoopbackListener(mtu=244)
    daemon = BoxDaemon(
        cfg,
        listeners=[listener],
        models=models,
        notifier=notifier or Notifier({}),
        store_clock=store_clock,
    )
    task = asyncio.create_task(daemon.run())
    ready = asyncio.create_task(daemon.ready.wait())
    await asyncio.wait({task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()
    assert daemon.ready.is_set(), "box did not start"
    box = RunningBox(daemon, listener, task, tmp)
    try:
        yield box
    finally:
        if not task.done():
            await box.stop()


def enrol_dev_box(tmp: Path, ca: Any) -> str:
    """Create a development box state and give its identity key a gateway certificate (as
    `box enroll` would); returns the box id."""
    from edgebox.box.state import init_state
    from edgebox.pki.ca import make_csr

    state = init_state(tmp / "box", dev=True)
    try:
        ident = state.identity
        issued = ca.issue_box(make_csr(ident.private_key), ident.box_id_hex)
        (tmp / "box" / "box.crt").write_bytes(issued.pem)
        return str(ident.box_id_hex)
    finally:
        state.close()


def gateway_section(ca: Any, port: int) -> dict[str, Any]:
    return {"url": f"https://127.0.0.1:{port}", "ca_file": str(ca.cert_path), "model": "gpt-test"}


class RecordingUpstream:
    """An OpenAI-compatible stub on loopback that streams `answer to <job>` (a pause of `word_delay`
    after each word, so requests can be in flight) and records every job it saw: `seen` counts them,
    `order` keeps their arrival order."""

    def __init__(self, word_delay: float = 0.0) -> None:
        self.word_delay = word_delay
        self.seen: Counter[str] = Counter()
        self.order: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        job = body["messages"][-1]["content"]
        self.seen[job] += 1
        self.order.append(job)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for word in ("answer", " to", " " + job):
            chunk = {"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            if self.word_delay:
                await asyncio.sleep(self.word_delay)
        usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
        await resp.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def start(self) -> None:
        app_ = web.Application()
        app_.router.add_post("/v1/chat/completions", self.handle)
        self._runner = web.AppRunner(app_, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
