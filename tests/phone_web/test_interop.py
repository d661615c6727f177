"""(4) Interop in one run: the Python reference phone and the web phone paired to one box, both
sessions working side by side, and neither able to use the other's records."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import expect

from edgebox.phone import client
from edgebox.phone.keystore import PhoneKeystore
from edgebox.session.errors import SessionError
from edgebox.transport import websocket
from edgebox.transport.base import LinkClosed
from tests.phone_web.support import Box, Web

_TAP = """() => {
  const ch = window.edgeboxPhone.session.channel;
  const send = ch.send.bind(ch);
  ch.send = async (m) => { window.__lastRecord = Array.from(m); return send(m); };
}"""


async def test_python_and_web_phones_on_one_box(web: Web, box: Box, tmp_path: Path) -> None:
    # The web phone pairs through its page.
    await web.page.goto(f"{web.base}/phone/?ws={box.url}")
    await expect(web.page.locator("body")).to_have_attribute("data-ready", "1")
    await web.page.fill("#payload", box.invite().encode())
    await web.page.click("#pair")
    await expect(web.page.locator("#status")).to_have_text("Connected")
    web_id = await web.page.text_content("#phone-id")

    # The Python phone pairs over the same transport.
    keystore = PhoneKeystore.load_or_create(tmp_path / "phone.json")
    py = await client.pair(await websocket.connect(box.url), keystore, box.invite())
    enrolled = {p.phone_id for p in box.state.store.phones.list_phones(include_revoked=True)}
    assert len(enrolled) == 2 and web_id in enrolled

    # Both sessions answer, at the same time.
    await web.page.fill("#question", "web phone question")
    ask_web = web.page.click("#ask")
    py_answer, _ = await asyncio.gather(py.ask("python phone question"), ask_web)
    assert py_answer.text == "python phone question"
    await expect(web.page.locator("#answer")).to_have_attribute("data-state", "stop")
    assert (await web.page.text_content("#answer") or "").strip() == "web phone question"

    # Capture one genuine record of each phone (a ping, answered normally).
    await web.page.evaluate(_TAP)
    await web.page.evaluate("() => window.edgeboxPhone.session.ping()")
    web_record = bytes(await web.page.evaluate("window.__lastRecord"))
    py_records: list[bytes] = []
    py_send = py.channel.send

    async def tap(message: bytes) -> None:
        py_records.append(message)
        await py_send(message)

    py.channel.send = tap  # type: ignore[method-assign]
    await py.ping()
    py_record = py_records[-1]
    assert py_record != web_record

    # The Python phone's record, sent on the web phone's session: the box refuses it.
    errors = box.server.stats.protocol_errors
    await web.page.evaluate(
        "(r) => window.edgeboxPhone.session.channel.send(new Uint8Array(r))", list(py_record)
    )
    await expect(web.page.locator("#error")).to_have_attribute("data-code", "auth_failed")
    assert box.server.stats.protocol_errors == errors + 1
    # ... and the Python phone's own session is untouched.
    assert (await py.ask("still fine")).text == "still fine"

    # The web phone's record, sent on the Python phone's session: refused too.
    await py_send(web_record)
    for _ in range(100):
        if py.channel.error is not None:
            break
        await asyncio.sleep(0.05)
    with pytest.raises((SessionError, LinkClosed)):
        await py.ask("after the foreign record")
    assert box.server.stats.protocol_errors == errors + 2

    # The web phone reconnects with a fresh session and goes on.
    await web.page.fill("#question", "a new session")
    await web.page.click("#ask")
    await expect(web.page.locator("#answer")).to_have_attribute("data-state", "stop")
    assert box.server.stats.sessions == 3  # two pairings and the web phone's reconnect
    await py.close()
    assert web.errors == []
