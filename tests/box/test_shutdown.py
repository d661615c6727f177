"""Graceful SIGTERM with real daemon objects over the loopback transport: the box stops accepting
links first, the answer being streamed reaches the phone whole, a request that may wait and is still
queued stays in the durable outbox, and after the restart it is delivered (nothing lost, nothing
sent upstream twice). Also each listener's stop_accepting()/close() contract."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from edgebox.box.state import open_state
from edgebox.box.textmodels import TextModels
from edgebox.pki.ca import DeviceCA
from edgebox.session.errors import SessionError
from edgebox.transport.base import LinkClosed, LinkListener
from edgebox.transport.loopback import LoopbackListener
from tests.box.support import box_config, enrol_dev_box, gateway_section, running_box
from tests.gateway.support import GatewayFactory, StubUpstream

WORDS = ("The ", "capital ", "of ", "France ", "is ", "Paris.")


async def _until(cond: object, what: str, tries: int = 600) -> None:
    for _ in range(tries):
        if cond():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


async def test_sigterm_mid_stream_finishes_the_answer_and_keeps_the_queue(
    tmp_path: Path,
    pki: DeviceCA,
    upstream: StubUpstream,
    make_gateway: GatewayFactory,
    text_models: TextModels,
) -> None:
    gw = await make_gateway()
    upstream.words = WORDS
    upstream.chunk_delay_s = 0.3  # the answer takes ~2 s to stream; the drain allows 60 s
    enrol_dev_box(tmp_path, pki)
    cfg = box_config(
        tmp_path,
        gateway=gateway_section(pki, gw.port),
        cache={"enabled": False},
        outbox={"poll_s": 0.05, "backoff_base_s": 0.1},
        box={"drain_timeout_s": 60.0},
    )
    async with running_box(tmp_path, cfg, text_models) as box:
        phone, ks = await box.pair()
        # A: may wait, the queue is empty, the WAN is up: sent at once and streamed back slowly.
        chunks: list[str] = []

        async def ask_a() -> object:
            done = None
            async for item in phone.ask_stream(
                "What is the capital of France?", request_id="a", can_wait=True
            ):
                if isinstance(item, str):
                    chunks.append(item)
                else:
                    done = item
            return done

        a = asyncio.create_task(ask_a())
        await _until(lambda: len(chunks) >= 1, "the first chunk of A")
        # B: may wait, but A is still ahead of it in the outbox: queued.
        b = await phone.ask("Write a short poem about autumn.", request_id="b", can_wait=True)
        assert b.done is not None and b.done.finish_reason == "queued"
        assert not a.done()
        listener = box.listener
        # systemd's stop: SIGTERM to the process (the daemon's own signal handler runs).
        os.kill(os.getpid(), signal.SIGTERM)
        await _until(lambda: not listener.accepting, "the box stopped accepting links")
        assert len(chunks) < len(WORDS), "A was complete before the stop began: the test proves nothing"
        with pytest.raises((LinkClosed, SessionError)):  # no new link while draining
            await box.connect(ks)
        done = await asyncio.wait_for(a, 30)
        # The answer in flight reached the phone whole, not cut and not "cancelled".
        assert "".join(chunks) == "".join(WORDS)
        assert done is not None and done.finish_reason != "cancelled"  # type: ignore[attr-defined]
        assert done.source == "gateway"  # type: ignore[attr-defined]
        await asyncio.wait_for(box.task, 60)
        box.task.result()
        assert len(upstream.requests) == 1  # B was not sent while the box stopped
    # B is still in the durable outbox; A is done and delivered.
    state = open_state(cfg.state_dir, dev=True)
    try:
        counts = state.store.outbox.counts()
    finally:
        state.close()
    assert counts["pending"] + counts["inflight"] == 1 and counts["done"] == 1, counts
    # The box starts again and the phone gets B when it connects: nothing lost, nothing twice.
    upstream.chunk_delay_s = 0.0
    async with running_box(tmp_path, cfg, text_models) as box:
        phone = await box.connect(ks)
        late = await asyncio.wait_for(phone.deliveries.get(), 30)
        assert late.request_id == "b" and late.text == "".join(WORDS)
        assert len(upstream.requests) == 2
        await phone.close()


async def _listeners(tmp_path: Path) -> list[tuple[str, LinkListener, object]]:
    from edgebox.transport import unix, websocket

    ws = websocket.WebSocketListener("127.0.0.1", 0)
    await ws.start()
    loop_l = LoopbackListener()
    sock = tmp_path / "phones.sock"
    return [
        ("loopback", loop_l, lambda: _loopback_connect(loop_l)),
        ("unix", unix.SeqpacketListener(sock), lambda: unix.connect(sock)),
        ("websocket", ws, lambda: websocket.connect(ws.url)),
    ]


async def _loopback_connect(listener: LoopbackListener) -> object:
    return listener.connect()


async def test_every_listener_stops_accepting_before_it_closes(tmp_path: Path) -> None:
    for name, listener, connect in await _listeners(tmp_path):
        phone = await connect()  # type: ignore[operator]
        box_end = await asyncio.wait_for(listener.accept(), 5)
        waiting = asyncio.create_task(listener.accept())
        await asyncio.sleep(0)
        await listener.stop_accepting()
        with pytest.raises(LinkClosed):  # a pending accept ends
            await asyncio.wait_for(waiting, 5)
        with pytest.raises(LinkClosed):
            await listener.accept()
        # A phone connecting now gets no working link.
        try:
            late = await connect()  # type: ignore[operator]
        except LinkClosed:
            pass
        else:
            with pytest.raises(LinkClosed):
                await asyncio.wait_for(late.recv(), 5)  # type: ignore[attr-defined]
        # The accepted link still carries datagrams both ways.
        await phone.send(b"ping")  # type: ignore[attr-defined]
        assert await asyncio.wait_for(box_end.recv(), 5) == b"ping", name
        await box_end.send(b"pong")
        assert await asyncio.wait_for(phone.recv(), 5) == b"pong", name  # type: ignore[attr-defined]
        # close() ends it.
        await listener.close()
        with pytest.raises(LinkClosed):
            await asyncio.wait_for(phone.recv(), 5)  # type: ignore[attr-defined]
        await listener.close()  # idempotent
        await phone.close()  # type: ignore[attr-defined]
