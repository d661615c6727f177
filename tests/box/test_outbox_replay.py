"""Store-and-forward replay with the real daemon, the real gateway and a recording upstream: requests
queued by two phones while the WAN is down reach the upstream in the order they were queued, each
once, and each answer reaches its own phone; a queued request whose outbox entry expired is never
forwarded, and its phone is told so with a typed error instead of waiting for ever."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgebox.box.textmodels import TextModels
from edgebox.phone.client import Answer, AppError, PhoneSession
from edgebox.pki.ca import DeviceCA
from edgebox.session import messages as app
from tests.box.support import (
    RecordingUpstream,
    RunningBox,
    box_config,
    enrol_dev_box,
    gateway_section,
    running_box,
)
from tests.gateway.support import GatewayFactory

OUTBOX = {
    "backoff_base_s": 0.05,
    "backoff_max_s": 0.2,
    "backoff_jitter": 0.0,
    "poll_s": 0.05,
    "breaker_open_s": 0.1,
    "ttl_s": 600.0,
}


@pytest.fixture
async def recording() -> AsyncIterator[RecordingUpstream]:
    up = RecordingUpstream()
    await up.start()
    yield up
    await up.stop()


async def _until(box: RunningBox, state: str, count: int) -> dict[str, int]:
    """Wait (bounded, not timed) until the outbox has `count` entries in `state`."""
    counts: dict[str, int] = {}
    for _ in range(600):
        counts = (await box.daemon.control.status())["outbox"]
        if counts[state] >= count:
            return counts
        await asyncio.sleep(0.05)
    raise AssertionError(f"outbox never reached {count} {state}: {counts}")


async def _deliveries(phone: PhoneSession, n: int) -> list[Answer]:
    return [await asyncio.wait_for(phone.deliveries.get(), 30) for _ in range(n)]


async def _queue(phone: PhoneSession, job: str) -> None:
    reply = await phone.ask(job, request_id=job, can_wait=True)
    assert reply.done is not None and reply.done.finish_reason == "queued", job


async def test_queued_requests_replay_in_order_once_each_to_their_phones(
    tmp_path: Path,
    pki: DeviceCA,
    recording: RecordingUpstream,
    make_gateway: GatewayFactory,
    text_models: TextModels,
) -> None:
    gw = await make_gateway(upstream_url=recording.url)
    port = gw.port
    enrol_dev_box(tmp_path, pki)
    cfg = box_config(tmp_path, gateway=gateway_section(pki, port), outbox=OUTBOX, cache={"enabled": False})
    async with running_box(tmp_path, cfg, text_models) as box:
        a, a_ks = await box.pair("a")
        b, b_ks = await box.pair("b")
        await gw.stop()  # WAN cut
        order = [(a, "job-1"), (b, "job-2"), (a, "job-3"), (a, "job-4"), (b, "job-5"), (a, "job-6")]
        for phone, job in order:
            await _queue(phone, job)
        counts = (await box.daemon.control.status())["outbox"]
        assert counts["pending"] + counts["inflight"] == len(order) and counts["done"] == 0
        assert recording.order == []
        # WAN back: the queue drains, oldest first.
        await make_gateway(upstream_url=recording.url, listen_port=port)
        await _until(box, "done", len(order))
        assert recording.order == [job for _, job in order]  # in order, each exactly once
        got_a = await _deliveries(a, 4)
        got_b = await _deliveries(b, 2)
        assert [d.request_id for d in got_a] == ["job-1", "job-3", "job-4", "job-6"]
        assert [d.request_id for d in got_b] == ["job-2", "job-5"]
        for d in got_a + got_b:
            assert d.text == f"answer to {d.request_id}" and d.done is not None
            assert d.done.source == "gateway" and d.error is None
        # Exactly once to the phones too: nothing more on these sessions, nor on new ones.
        for phone in (a, b):
            await phone.ping()
            assert phone.deliveries.empty()
            await phone.close()
        for ks in (a_ks, b_ks):
            again = await box.connect(ks)
            await again.ping()
            assert again.deliveries.empty()
            await again.close()
        assert recording.order == [job for _, job in order]
        assert box.daemon.forwarder.forwarded == len(order)


class StoreClock:
    """The store's wall clock, moved on by the test (outbox expiry without waiting)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def test_an_expired_queued_request_is_not_forwarded_and_its_phone_is_told(
    tmp_path: Path,
    pki: DeviceCA,
    recording: RecordingUpstream,
    make_gateway: GatewayFactory,
    text_models: TextModels,
) -> None:
    gw = await make_gateway(upstream_url=recording.url)
    port = gw.port
    enrol_dev_box(tmp_path, pki)
    cfg = box_config(tmp_path, gateway=gateway_section(pki, port), outbox=OUTBOX, cache={"enabled": False})
    clock = StoreClock()
    async with running_box(tmp_path, cfg, text_models, store_clock=clock) as box:
        a, _ = await box.pair("a")
        await gw.stop()
        await _queue(a, "old-job")
        clock.offset = OUTBOX["ttl_s"] + 1  # the box was offline longer than [outbox] ttl_s
        await _queue(a, "new-job")
        await make_gateway(upstream_url=recording.url, listen_port=port)
        counts = await _until(box, "done", 1)
        assert counts["expired"] == 1 and counts["pending"] + counts["inflight"] == 0
        assert recording.order == ["new-job"]  # the expired request never reached the upstream
        got = {d.request_id: d for d in await _deliveries(a, 2)}
        assert got["new-job"].text == "answer to new-job" and got["new-job"].error is None
        expired = got["old-job"]
        assert expired.done is None and expired.error is not None
        assert expired.error.code is app.ErrorKind.upstream_unavailable
        assert "expired" in expired.error.message
        # Asking again under the same id gets the same typed refusal, and still nothing upstream.
        with pytest.raises(AppError) as err:
            await a.ask("old-job", request_id="old-job", can_wait=True)
        assert err.value.code == "upstream_unavailable" and "expired" in str(err.value)
        await a.ping()
        assert a.deliveries.empty()
        assert recording.order == ["new-job"]
        rows = [r.decision for r in await box.daemon.control.prompt_log(20)]
        assert "outbox_expired" in rows
        await a.close()
