"""Store-and-forward on the web phone, in Chromium, against the real box daemon (pipeline, outbox,
forwarder, uplink) with a real gateway that goes down and comes back: a question that may not
wait is refused in true words; one that may wait is queued ("queued" state), its answer arrives
later on the live session, and after a reload a second one arrives on the next connection from
the id kept in IndexedDB; the conversation survives reloads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Locator, expect

from edgebox.box.textmodels import TextModels
from edgebox.pki.ca import DeviceCA
from tests.box.support import RunningBox, box_config, enrol_dev_box, gateway_section, running_box
from tests.gateway.support import GatewayFactory, StubUpstream
from tests.phone_web.support import Web

QUEUED = "Queued — the answer will arrive when the box is back online."


@pytest.fixture
async def wan_box(
    tmp_path: Path, pki: DeviceCA, make_gateway: GatewayFactory, text_models: TextModels
) -> AsyncIterator[tuple[RunningBox, int]]:
    gw = await make_gateway()
    enrol_dev_box(tmp_path, pki)
    cfg = box_config(
        tmp_path,
        gateway=gateway_section(pki, gw.port),
        outbox={"backoff_base_s": 0.1, "poll_s": 0.1, "breaker_open_s": 0.2},
        dev={"websocket": True, "websocket_port": 0},
    )
    async with running_box(tmp_path, cfg, text_models) as box:
        await gw.stop()  # the WAN is down from the start
        yield box, gw.port


async def _outbox_done(box: RunningBox, n: int) -> None:
    for _ in range(400):
        if (await box.daemon.control.status())["outbox"]["done"] >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the queued question was not answered by the gateway")


def _item(web: Web, n: int) -> Locator:
    return web.page.locator("#waiting li").nth(n)


async def _open(web: Web, url: str) -> None:
    await web.page.goto(f"{web.base}/phone/?ws={url}")
    await expect(web.page.locator("body")).to_have_attribute("data-ready", "1")


async def test_queued_answers_arrive_later_and_survive_reload(
    web: Web, wan_box: tuple[RunningBox, int], make_gateway: GatewayFactory, upstream: StubUpstream
) -> None:
    box, port = wan_box
    url = box.daemon.websocket_url
    assert url
    await _open(web, url)
    await web.page.fill("#payload", (await box.daemon.control.create_invite()).encode())
    await web.page.click("#pair")
    await expect(web.page.locator("#status")).to_have_text("Connected")

    # May not wait: refused, and the page does not claim it was queued.
    await web.page.fill("#question", "Write a limerick about a cat.")
    await web.page.click("#ask")
    await expect(web.page.locator("#error")).to_have_attribute("data-code", "upstream_unavailable")
    await expect(web.page.locator("#error")).to_contain_text("cannot reach head office")
    assert "queued" not in (await web.page.text_content("#error") or "")
    await expect(web.page.locator("#waiting-section")).to_be_hidden()

    # May wait: the box queues it (can_wait went out), the page says so and keeps it.
    await web.page.check("#can-wait")
    await web.page.fill("#question", "Write a short poem about autumn.")
    await web.page.click("#ask")
    await expect(web.page.locator("#answer")).to_have_attribute("data-state", "queued")
    await expect(web.page.locator("#answer-meta")).to_have_text(QUEUED)
    await expect(web.page.locator("#error")).to_be_hidden()
    await expect(_item(web, 0)).to_have_attribute("data-state", "queued")
    await expect(_item(web, 0).locator(".a")).to_have_text(QUEUED)
    assert upstream.requests == []

    # WAN back: the forwarder sends it once, the answer arrives on the live session.
    gw = await make_gateway(listen_port=port)
    await expect(_item(web, 0)).to_have_attribute("data-state", "answered")
    await expect(_item(web, 0).locator(".q")).to_have_text("Write a short poem about autumn.")
    await expect(_item(web, 0).locator(".a")).to_have_text("Hello!")
    assert len(upstream.requests) == 1

    # WAN down again: a second question is queued, then the page is closed and reloaded.
    await gw.stop()
    await web.page.fill("#question", "Write a haiku about rain.")
    await web.page.click("#ask")
    await expect(web.page.locator("#answer")).to_have_attribute("data-state", "queued")
    await _open(web, url)
    await expect(web.page.locator("#status")).to_have_text("Paired · not connected")
    await expect(_item(web, 0)).to_have_attribute("data-state", "answered")
    await expect(_item(web, 1)).to_have_attribute("data-state", "queued")
    await expect(_item(web, 1).locator(".q")).to_have_text("Write a haiku about rain.")
    await expect(web.page.locator("#fetch-waiting")).to_be_visible()

    # The gateway answers while the phone is away; the next connection brings the answer.
    await make_gateway(listen_port=port)
    await _outbox_done(box, 2)
    await web.page.click("#fetch-waiting")
    await expect(web.page.locator("#status")).to_have_text("Connected")
    await expect(_item(web, 1)).to_have_attribute("data-state", "answered")
    await expect(_item(web, 1).locator(".a")).to_have_text("Hello!")
    await expect(web.page.locator("#fetch-waiting")).to_be_hidden()
    assert len(upstream.requests) == 2

    # Stored in IndexedDB: both answers are there after another reload, with no connection.
    await _open(web, url)
    await expect(web.page.locator("#waiting li")).to_have_count(2)
    for n in (0, 1):
        await expect(_item(web, n)).to_have_attribute("data-state", "answered")
        await expect(_item(web, n).locator(".a")).to_have_text("Hello!")
    await expect(web.page.locator("#fetch-waiting")).to_be_hidden()
    # An answered question can be removed from the list.
    await _item(web, 0).locator("button.remove").click()
    await expect(web.page.locator("#waiting li")).to_have_count(1)
    assert web.errors == []
