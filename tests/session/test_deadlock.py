"""Item 8: the framed channel must keep reading acks while the box's send window is full.

v1: while the box's send window was full its receive loop waited inside `channel.send`; a phone
that sent about ten messages meanwhile (pings, cancels) filled the inbound queue, the reader
blocked, acks stopped being read and the link died after 15 s ("peer stopped acknowledging").
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from edgebox.box.responder import EchoResponder
from edgebox.phone import client
from edgebox.session import messages as app
from edgebox.session.config import SessionConfig
from edgebox.transport.base import DatagramLink
from tests.session.box_harness import Box


class StalledRadio:
    """The phone's end of a link whose receive side stalls until released (sending still works)."""

    def __init__(self, link: DatagramLink) -> None:
        self.link = link
        self.flowing = asyncio.Event()
        self.flowing.set()

    @property
    def mtu(self) -> int:
        return self.link.mtu

    @property
    def peer(self) -> str:
        return self.link.peer

    async def send(self, datagram: bytes) -> None:
        await self.link.send(datagram)

    async def recv(self) -> bytes:
        await self.flowing.wait()
        return await self.link.recv()

    async def close(self) -> None:
        await self.link.close()


async def test_inbound_flood_while_the_outbound_window_is_full(tmp_path: Path) -> None:
    cfg = SessionConfig(window=16, ack_timeout_s=8.0)
    box = Box(tmp_path, responder=EchoResponder(piece=4000), config=cfg)  # type: ignore[arg-type]
    try:
        radio = StalledRadio(box.listener.connect())
        session = await client.pair(radio, box.phone(), box.invite(), config=cfg)  # type: ignore[arg-type]
        radio.flowing.clear()  # the phone stops hearing the box: the box's window fills
        answer = asyncio.create_task(session.ask("z" * 30_000))
        await asyncio.sleep(0.5)
        # Meanwhile the phone floods the box with small messages (pings, a cancel of nothing).
        floods = [asyncio.create_task(session.ping(timeout=20)) for _ in range(24)]
        floods.append(asyncio.create_task(session._send(app.Cancel(id="nothing-running"))))
        await asyncio.sleep(1.0)
        radio.flowing.set()  # the phone hears again and acks
        async with asyncio.timeout(6.0):  # well inside the ack timeout: no deadlock, no stall
            result = await answer
            await asyncio.gather(*floods)
        assert result.text == "z" * 30_000
        assert box.server.stats.protocol_errors == 0
        await session.close()
    finally:
        await box.stop()
