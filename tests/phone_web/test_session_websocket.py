"""(2) The page, driven through its UI in Chromium, against the real Python box over the WebSocket
development link: pairing from the QR payload, a streamed answer, cancel, a revoked phone refused,
tampered records refused in both directions."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import expect

from edgebox.session.connection import phone_id
from tests.phone_web.support import Box, SlowEcho, TamperProxy, Web, start_box, stop_box

_COUNT_UPDATES = """() => {
  window.__updates = 0;
  new MutationObserver(() => window.__updates++).observe(
    document.getElementById('answer'), {childList: true, characterData: true, subtree: true});
}"""


async def _open(web: Web, url: str) -> None:
    await web.page.goto(f"{web.base}/phone/?ws={url}")
    await expect(web.page.locator("body")).to_have_attribute("data-ready", "1")


async def _pair(web: Web, box: Box) -> str:
    await web.page.fill("#payload", box.invite().encode())
    await web.page.click("#pair")
    await expect(web.page.locator("#status")).to_have_text("Connected")
    return await web.page.text_content("#phone-id") or ""


async def _ask(web: Web, text: str) -> None:
    await web.page.fill("#question", text)
    await web.page.click("#ask")


async def test_pair_stream_cancel_revoke(web: Web, tmp_path: Path) -> None:
    box = await start_box(tmp_path / "box", responder=SlowEcho(pause=0.02))
    try:
        await _open(web, box.url)
        pid = await _pair(web, box)
        phones = box.state.store.phones.list_phones(include_revoked=True)
        assert [p.phone_id for p in phones] == [pid]
        # The key in IndexedDB is the one the box enrolled, and it cannot be exported.
        point_hex = await web.page.evaluate(
            "async () => { const s = await window.edgeboxPhone.keystore.stored();"
            " return Array.from(s.point, (x) => x.toString(16).padStart(2, '0')).join(''); }"
        )
        assert phone_id(bytes.fromhex(point_hex)) == pid
        export = await web.page.evaluate(
            "async () => { const s = await window.edgeboxPhone.keystore.stored();"
            " try { await crypto.subtle.exportKey('pkcs8', s.privateKey); return 'exported'; }"
            " catch (e) { return e.name + ':' + s.privateKey.extractable; } }"
        )
        assert export == "InvalidAccessError:false"

        # A streamed answer: the text arrives in several updates, then the done line.
        await web.page.evaluate(_COUNT_UPDATES)
        question = "the quick brown fox jumps over the lazy dog and runs far away"
        await _ask(web, question)
        await expect(web.page.locator("#answer")).to_have_attribute("data-state", "stop")
        assert (await web.page.text_content("#answer") or "").split() == question.split()
        assert await web.page.evaluate("window.__updates") >= 3
        await expect(web.page.locator("#answer-meta")).to_contain_text("from echo")

        # Cancel: a long answer stops early and says so.
        box.server.responder = SlowEcho(pause=0.05, repeat=40)
        await _ask(web, "a long answer please")
        await expect(web.page.locator("#answer")).to_have_attribute("data-state", "streaming")
        await expect(web.page.locator("#answer")).not_to_have_text("")
        await web.page.click("#cancel")
        await expect(web.page.locator("#answer")).to_have_attribute("data-state", "cancelled")
        assert len((await web.page.text_content("#answer") or "").split()) < 4 * 40
        await expect(web.page.locator("#answer-meta")).to_contain_text("stopped")

        # The session survives: another question on the same session.
        box.server.responder = SlowEcho(pause=0.0)
        await _ask(web, "still there")
        await expect(web.page.locator("#answer")).to_have_attribute("data-state", "stop")
        assert box.server.stats.sessions == 1

        # Revoked: the next connection is refused with a typed error in plain words.
        assert box.state.registry.revoke(pid)
        await web.page.click("#settings summary")
        await web.page.click("#disconnect")
        await _ask(web, "am I still allowed")
        await expect(web.page.locator("#error")).to_have_attribute("data-code", "phone_revoked")
        await expect(web.page.locator("#error")).to_contain_text("removed from the box")
        await expect(web.page.locator("#pair-section")).to_be_visible()  # it can only pair again
        assert web.errors == []
    finally:
        await stop_box(box)


async def test_tampered_records_refused_both_ways(web: Web, box: Box) -> None:
    proxy = TamperProxy(box.url)
    await proxy.start()
    try:
        await _open(web, proxy.url)
        await _pair(web, box)
        # Phone -> box: one bit flipped in a sealed record; the box refuses and ends the session.
        errors_before = box.server.stats.protocol_errors
        await web.page.evaluate(
            """async () => {
              const s = window.edgeboxPhone.session;
              const ping = new TextEncoder().encode('{"type":"ping","v":1,"nonce":7}');
              const rec = await s.conn._records.seal(0x10, ping, performance.now() / 1000);
              rec[rec.length - 1] ^= 1;
              await s.channel.send(rec);
            }"""
        )
        await expect(web.page.locator("#error")).to_have_attribute("data-code", "auth_failed")
        await expect(web.page.locator("#status")).to_have_text("Paired · not connected")
        assert box.server.stats.protocol_errors == errors_before + 1

        # Box -> phone: the proxy flips a bit of the answer; the phone refuses it, shows no text.
        await _ask(web, "first a good answer")
        await expect(web.page.locator("#answer")).to_have_attribute("data-state", "stop")
        proxy.flip_next = True
        await _ask(web, "this answer will be damaged on the way")
        await expect(web.page.locator("#answer")).to_have_attribute("data-state", "error")
        assert proxy.flipped == 1
        await expect(web.page.locator("#error")).to_have_attribute("data-code", "auth_failed")
        assert "damaged" not in (await web.page.text_content("#answer") or "")
        assert web.errors == []
    finally:
        await proxy.close()


_KEY = """async () => { const s = await window.edgeboxPhone.keystore.stored();
  return {point: Array.from(s.point, (x) => x.toString(16).padStart(2, '0')).join(''),
          created: s.createdAt, extractable: s.privateKey.extractable,
          type: s.privateKey.type, usages: s.privateKey.usages}; }"""


async def test_reload_reconnects_with_the_key_kept_in_indexeddb(web: Web, box: Box) -> None:
    """A reloaded page is the same phone: the non-extractable key and the paired box come back from
    IndexedDB, the box authenticates it as the enrolled phone (no new pairing), and it asks again."""
    box.server.responder = SlowEcho(pause=0.0)
    await _open(web, box.url)
    pid = await _pair(web, box)
    before = await web.page.evaluate(_KEY)
    await _ask(web, "before the reload")
    await expect(web.page.locator("#answer")).to_have_attribute("data-state", "stop")

    await web.page.reload()
    await expect(web.page.locator("body")).to_have_attribute("data-ready", "1")
    await expect(web.page.locator("#status")).to_have_text("Paired · not connected")
    await expect(web.page.locator("#pair-section")).to_be_hidden()
    assert await web.page.text_content("#phone-id") == pid
    after = await web.page.evaluate(_KEY)
    assert after == before and after["extractable"] is False and after["type"] == "private"
    assert phone_id(bytes.fromhex(after["point"])) == pid

    await _ask(web, "after the reload")
    await expect(web.page.locator("#status")).to_have_text("Connected")
    await expect(web.page.locator("#answer")).to_have_attribute("data-state", "stop")
    assert (await web.page.text_content("#answer") or "").split() == ["after", "the", "reload"]
    assert box.server.stats.sessions == 2 and box.server.stats.pairings == 1  # connected, not paired
    assert [s.phone for s in box.server.sessions_for(pid)] == [pid]
    phones = box.state.store.phones.list_phones(include_revoked=True)
    assert [p.phone_id for p in phones] == [pid]
    assert web.errors == []
