"""Pairing through the page (QR decoded from the screen, reference phone client), revoke, rename."""

from __future__ import annotations

import asyncio
import io
import re
from typing import Any

import pytest
import zxingcpp
from PIL import Image
from playwright.async_api import expect

from edgebox.phone import client
from edgebox.phone.keystore import PhoneKeystore
from edgebox.session.connection import phone_id
from edgebox.session.errors import SessionError
from edgebox.session.invite import PairingInvite
from edgebox.transport.base import LinkClosed
from edgebox.transport.websocket import WebSocketListener

from .conftest import Box, new_page, set_up, shot


async def decode_qr(page: Any) -> str:
    png = await page.locator("#pair-qr").screenshot()
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(results) == 1, "exactly one QR code on the page"
    return str(results[0].text)


async def test_pair_a_phone_from_the_qr_on_the_page(
    page: Any, box: Box, capsys: pytest.CaptureFixture[str]
) -> None:
    await set_up(page, box)
    await page.click("nav >> text=Pair a phone")
    await page.click("main button:has-text('Show a pairing code')")
    await page.wait_for_selector("#pair-qr")
    assert "left" in await page.inner_text("#countdown")
    await shot(page, "pair")
    text = await decode_qr(page)
    invite = PairingInvite.decode(text)
    assert invite.box_id == box.state.identity.box_id
    ks = PhoneKeystore.load_or_create(box.tmp / "phone.json")
    session = await client.pair(box.listener.connect(), ks, invite)
    await page.wait_for_selector("#paired-name", timeout=30_000)  # the page notices by itself
    pid = phone_id(ks.public_point)
    assert await page.inner_text("#paired-name") == f"phone-{pid}"
    assert await page.locator("#pair-qr").count() == 0  # the code is gone from the page
    await shot(page, "pair-done")
    # single use: a second phone with the same code is refused
    with pytest.raises(SessionError):
        await client.pair(box.listener.connect(), PhoneKeystore.load_or_create(box.tmp / "b.json"), invite)
    await page.goto(box.url + f"/pair/{int.from_bytes(invite.secret_id, 'big')}")
    assert await page.locator("#pair-qr").count() == 0
    # the phone list shows it, connected
    await page.goto(box.url + "/phones")
    card = page.locator(f"li[data-phone='{pid}']")
    assert "connected" in await card.inner_text()
    assert (await session.ask("hello")).text == "hello"
    await session.close()
    # the secret never reached a log line or the audit trail
    logs = capsys.readouterr()
    audit = repr(box.service.records.audit_entries())
    for needle in (invite.secret.hex(), text, text[9:], invite.psk().hex()):
        assert needle not in logs.out + logs.err
        assert needle not in audit
    assert "pairing_code_created" in audit


async def test_pair_the_web_phone_by_pasting_the_code_shown_as_text(
    page: Any, browser: Any, box: Box
) -> None:
    """The payload under the QR is the QR's own text; Copy puts it on the clipboard; pasted into the
    web phone (served by this admin server at /phone/), it pairs, and the pair page sees it."""
    ws = WebSocketListener("127.0.0.1", 0)  # the development link of the web phone, same box server
    await ws.start()
    serving = asyncio.create_task(box.server.serve(ws))
    try:
        await set_up(page, box)
        await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=box.url)
        await page.goto(box.url + "/pair")
        await page.click("main button:has-text('Show a pairing code')")
        await page.wait_for_selector("#pair-qr")
        shown = (await page.inner_text("#pair-payload")).strip()
        assert shown == await decode_qr(page)
        await page.click("#copy-payload")
        await expect(page.locator("#copy-payload")).to_have_text("Copied")
        pasted = await page.evaluate("navigator.clipboard.readText()")
        assert pasted == shown
        assert page.csp_violations == [] and page.js_errors == []

        phone = await new_page(browser, width=390, height=844)
        try:
            await phone.goto(f"{box.url}/phone/?ws={ws.url}")
            await expect(phone.locator("body")).to_have_attribute("data-ready", "1")
            await expect(phone.locator("#pair-section .hint")).to_contain_text("“Pair a phone”")
            await phone.fill("#payload", pasted)
            await phone.click("#pair")
            await expect(phone.locator("#status")).to_have_text("Connected")
            pid = await phone.text_content("#phone-id")  # in the closed settings panel
            await page.wait_for_selector("#paired-name", timeout=30_000)
            assert await page.inner_text("#paired-name") == f"phone-{pid}"
            assert await page.locator("#pair-payload").count() == 0  # gone with the QR
            await page.reload()
            assert await page.locator("#pair-payload").count() == 0
        finally:
            await phone.context.close()
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        await ws.close()


async def test_pairing_code_expires_on_the_page(page: Any, box: Box) -> None:
    box.service.app.config = type(box.service.app.config)(invite_ttl_s=4)
    await set_up(page, box)
    await page.goto(box.url + "/pair")
    await page.click("main button:has-text('Show a pairing code')")
    # the countdown reaches zero in the page (or, on a slow machine, the page was already late)
    await expect(page.locator("#pair-status")).to_contain_text(
        re.compile(r"has expired|is expired"), timeout=30_000
    )
    assert await page.locator("#pair-qr").count() == 0
    assert await page.locator("#pair-payload").count() == 0
    await page.reload()
    assert "This pairing code is expired" in await page.inner_text("#pair-status")  # the box agrees


async def test_rename_then_revoke_drops_the_live_session(page: Any, box: Box) -> None:
    await set_up(page, box)
    invite = await box.backend.create_invite(300)
    ks = PhoneKeystore.load_or_create(box.tmp / "phone.json")
    session = await client.pair(box.listener.connect(), ks, PairingInvite.decode(invite.payload))
    pid = phone_id(ks.public_point)
    await session.ping()
    await page.goto(box.url + "/phones")
    card = page.locator(f"li[data-phone='{pid}']")
    await card.locator("input[name=name]").fill("Front desk")
    await card.locator("button:has-text('Rename')").click()
    await page.wait_for_selector(".msg.notice")
    assert await card.locator(".phone-name").inner_text() == "Front desk"
    await shot(page, "phones")
    page.once("dialog", lambda d: d.accept())
    await card.locator("button:has-text('Revoke')").click()
    await page.wait_for_selector("text=1 live session dropped")
    assert "revoked" in await card.inner_text()
    await shot(page, "phones-revoked")
    with pytest.raises((LinkClosed, SessionError)):
        await session.ask("are you still there?")
    with pytest.raises(SessionError) as e:
        await client.connect(box.listener.connect(), ks, ks.box(None))
    assert e.value.code == "phone_revoked"
    actions = {a.action: a for a in box.service.records.audit_entries()}
    assert actions["phone_revoked"].target == pid and "1 live session" in actions["phone_revoked"].detail
    assert actions["phone_renamed"].target == pid


async def test_revoke_needs_confirmation(page: Any, box: Box) -> None:
    await set_up(page, box)
    invite = await box.backend.create_invite(300)
    ks = PhoneKeystore.load_or_create(box.tmp / "phone.json")
    session = await client.pair(box.listener.connect(), ks, PairingInvite.decode(invite.payload))
    await page.goto(box.url + "/phones")
    page.once("dialog", lambda d: d.dismiss())
    await page.click("button:has-text('Revoke')")
    await page.wait_for_timeout(300)
    assert box.state.store.phones.get(phone_id(ks.public_point)).revoked_at is None  # type: ignore[union-attr]
    await session.ping()
    await session.close()
