"""Status (live, phone-sized), audit filter + CSV, settings, forged cross-site posts, CSP -- in Chromium."""

from __future__ import annotations

import csv
import time
import tomllib
from pathlib import Path
from typing import Any

from aiohttp import web
from playwright.async_api import expect

from edgebox.admin.listen import bind_socket
from edgebox.admin.security import CSP
from edgebox.phone import client
from edgebox.phone.keystore import PhoneKeystore
from edgebox.session.connection import phone_id
from edgebox.session.invite import PairingInvite

from .conftest import Box, set_up, shot

PAGES = ["/status", "/pair", "/phones", "/documents", "/audit", "/settings"]


async def pair_phone(box: Box, name: str) -> tuple[str, client.PhoneSession]:
    invite = await box.backend.create_invite(300)
    ks = PhoneKeystore.load_or_create(box.tmp / f"{name}.json")
    session = await client.pair(box.listener.connect(), ks, PairingInvite.decode(invite.payload))
    return phone_id(ks.public_point), session


def seed_log(box: Box, phones: list[str]) -> None:
    now = time.time()
    decisions = ["allow", "allow", "cached", "block", "allow", "flag", "cached", "allow"]
    for i in range(40):
        box.state.store.prompt_log.record(
            f"trace-{i:04d}",
            phone_id=phones[i % len(phones)],
            decision=decisions[i % len(decisions)],
            timings_ms={"total": 12.5 + i},
            model="local" if i % 3 else "gpt-test",
            created_at=now - (i * 2131) % 86_000,
        )


async def test_status_page_live_and_at_phone_size(browser: Any, page: Any, box: Box) -> None:
    from .conftest import new_page

    await set_up(page, box)
    assert await page.inner_text("#phones-connected") == "0"
    pid, session = await pair_phone(box, "p1")
    seed_log(box, [pid])
    # updates without a reload (polling the server-rendered fragment)
    await expect(page.locator("#phones-connected")).to_have_text("1", timeout=30_000)
    await expect(page.locator("#cache-rate")).to_contain_text("%", timeout=30_000)
    assert await page.locator("svg.chart").count() == 3
    assert await page.locator("svg.chart rect").count() == 72
    await shot(page, "status")
    phone = await new_page(browser, width=390, height=844)
    await phone.context.add_cookies(await page.context.cookies())
    await phone.goto(box.url + "/status")
    assert phone.url.endswith("/status")
    overflow = await phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "no sideways scrolling on a phone"
    await shot(phone, "status-phone")
    for path in ("/phones", "/audit", "/pair"):
        await phone.goto(box.url + path)
        assert await phone.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0, path
    await phone.click("main button:has-text('Show a pairing code')")
    await phone.wait_for_selector("#pair-qr")
    box_ = await phone.locator("#pair-qr").bounding_box()
    assert box_ is not None and box_["x"] >= 0 and box_["x"] + box_["width"] <= 390
    assert await phone.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    await shot(phone, "pair-phone")
    await phone.context.close()
    await session.close()


async def test_audit_filter_and_csv_export(page: Any, box: Box) -> None:
    await set_up(page, box)
    p1, s1 = await pair_phone(box, "p1")
    p2, s2 = await pair_phone(box, "p2")
    seed_log(box, [p1, p2])
    await page.goto(box.url + "/audit")
    assert await page.locator("#log-table tbody tr").count() == 40
    await page.select_option("select[name=phone]", p1)
    await page.select_option("select[name=decision]", "allow")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url("**/audit?*")
    rows = page.locator("#log-table tbody tr")
    expected = [
        e for e in box.state.store.prompt_log.recent(limit=100) if e.phone_id == p1 and e.decision == "allow"
    ]
    assert await rows.count() == len(expected) > 0
    assert all(p1 in t and "allow" in t for t in await rows.all_inner_texts())
    await shot(page, "audit")
    async with page.expect_download() as info:
        await page.click("#csv-link")
    download = await info.value
    path = Path(await download.path())
    table = list(csv.reader(path.read_text().splitlines()))
    assert table[0] == ["time_utc", "trace_id", "phone_id", "decision", "model", "timings_ms"]
    assert sorted(r[1] for r in table[1:]) == sorted(e.trace_id for e in expected)
    assert {r[2] for r in table[1:]} == {p1} and {r[3] for r in table[1:]} == {"allow"}
    # by trace id
    await page.fill("input[name=trace]", "trace-0007")
    await page.select_option("select[name=phone]", "")
    await page.select_option("select[name=decision]", "")
    await page.click("form.filters button[type=submit]")
    assert await page.locator("#log-table tbody tr").count() == 1
    assert "trace-0007" in await page.inner_text("#log-table")
    actions = box.service.records.audit_entries()
    assert actions[0].action == "audit_exported" and "phone=" in actions[0].detail
    # admin actions are listed on the same page
    assert "audit_exported" in await page.inner_text("#admin-actions")
    await s1.close()
    await s2.close()


async def test_settings_validated_and_written_atomically(page: Any, box: Box) -> None:
    await set_up(page, box)
    await page.goto(box.url + "/settings")
    before = box.config_path.read_bytes()
    await page.fill("input[name='gateway.url']", "http://gateway.example")
    await page.fill("input[name='pipeline.quota_tokens']", "lots")
    await page.fill("input[name='pipeline.injection_block_threshold']", "1.5")
    await page.click("main button[type=submit]")
    errors = await page.locator(".field-error").all_inner_texts()
    assert any("https:// URL" in e for e in errors), errors
    assert any("whole number" in e for e in errors)
    assert any("at most 1" in e for e in errors)
    assert box.config_path.read_bytes() == before  # nothing half-written
    await shot(page, "settings-invalid")
    await page.fill("input[name='gateway.url']", "https://gw.branch.example:9443")
    await page.fill("input[name='pipeline.quota_tokens']", "9000")
    await page.fill("input[name='pipeline.injection_block_threshold']", "0.75")
    await page.fill("input[name='pipeline.injection_flag_threshold']", "0.9")  # above the refusal threshold
    await page.click("main button[type=submit]")
    assert "must not be above the refusal threshold" in await page.inner_text(".field-error")
    assert box.config_path.read_bytes() == before
    await page.fill("input[name='pipeline.injection_flag_threshold']", "0.4")
    await page.check("input[name='pipeline.log_text']")
    await page.click("main button[type=submit]")
    await page.wait_for_selector("text=Settings saved")
    text = box.config_path.read_text()
    doc = tomllib.loads(text)
    assert doc["gateway"]["url"] == "https://gw.branch.example:9443"
    assert doc["pipeline"]["quota_tokens"] == 9000 and doc["pipeline"]["log_text"] is True
    assert doc["pipeline"]["injection_block_threshold"] == 0.75
    assert doc["pipeline"]["injection_flag_threshold"] == 0.4
    assert doc["documents"]["answer_threshold"] == 0.55  # a missing key: written into a new table
    assert doc["gateway"]["ca_file"] == "/etc/edgebox/gateway-ca.pem"  # untouched keys kept
    assert "# the AI gateway" in text and text.startswith("# edgebox box configuration")  # comments kept
    assert not list(box.config_path.parent.glob(".box.toml.tmp"))
    await shot(page, "settings")
    changed = [a for a in box.service.records.audit_entries() if a.action == "settings_changed"]
    assert changed[0].outcome == "ok" and "gateway.url" in changed[0].target
    assert [c.outcome for c in changed[1:]] == ["refused", "refused"]


async def _attacker(html: str, *, ssl_context: Any = None) -> tuple[web.AppRunner, int]:
    async def handler(_r: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = bind_socket("127.0.0.1", 0)
    await web.SockSite(runner, sock, ssl_context=ssl_context).start()
    return runner, int(sock.getsockname()[1])


def _forged_form(target: str, csrf: str = "") -> str:
    return (
        "<!doctype html><title>win a prize</title>"
        f"<form method=post action='{target}'><input type=hidden name=csrf value='{csrf}'>"
        "<button id=go>claim</button></form>"
    )


async def test_forged_cross_site_form_posts_are_refused(page: Any, box: Box) -> None:
    await set_up(page, box)
    pid, session = await pair_phone(box, "victim")
    target = f"{box.url}/phones/{pid}/revoke"
    await page.goto(box.url + "/phones")
    real_token = await page.get_attribute("form[action$='/revoke'] input[name=csrf]", "value")
    attempts = [
        # another site (localhost is not 127.0.0.1): SameSite=Strict keeps the cookie home
        ("http", _forged_form(target), None, "localhost", "sign in first"),
        # same site, other origin (https, other port): the cookie goes along, the CSRF token does not
        (
            "https",
            _forged_form(target),
            box.service.certificate.ssl_context(),
            "127.0.0.1",
            "CSRF check failed",
        ),
        # even with a leaked token, the Origin is not the admin page's own
        (
            "https",
            _forged_form(target, real_token or ""),
            box.service.certificate.ssl_context(),
            "127.0.0.1",
            "CSRF check failed",
        ),
    ]
    for scheme, html, ctx, host, refusal in attempts:
        runner, port = await _attacker(html, ssl_context=ctx)
        try:
            await page.goto(f"{scheme}://{host}:{port}/")
            async with page.expect_response(target) as info:
                await page.click("#go")
            response = await info.value
            assert response.status == 403
            assert response.headers["content-security-policy"] == CSP  # error pages too
            assert refusal in await page.content()
        finally:
            await runner.cleanup()
        assert box.state.store.phones.get(pid).revoked_at is None  # type: ignore[union-attr]
    await session.ping()  # the phone was never touched
    refused = [a for a in box.service.records.audit_entries() if a.action == "forged_request_refused"]
    assert [a.detail for a in refused] == ["origin", "token"]
    await session.close()


async def test_csp_and_security_headers_on_every_page_and_no_inline_script(page: Any, box: Box) -> None:
    await set_up(page, box)
    await box.backend.create_invite(300)
    for path in [*PAGES, "/pair", "/login", "/static/app.css"]:
        response = await page.goto(box.url + path)
        assert response is not None
        h = response.headers
        assert h["content-security-policy"] == CSP
        assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP and "frame-ancestors 'none'" in CSP
        assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
        assert h["strict-transport-security"].startswith("max-age=")
        assert h["referrer-policy"] == "same-origin" and h["cross-origin-opener-policy"] == "same-origin"
        if path.startswith("/static/"):
            continue
        assert h["cache-control"] == "no-store"
        inline = await page.evaluate(
            """() => ({
                scripts: [...document.scripts].filter(s => !s.src).length,
                external: [...document.scripts].filter(
                    s => s.src && new URL(s.src).origin !== location.origin).length,
                styleAttrs: document.querySelectorAll('[style]').length,
                styleTags: document.querySelectorAll('style').length,
                handlers: [...document.querySelectorAll('*')].filter(
                    e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
                foreign: [...document.querySelectorAll('link[href],img[src]')].filter(
                    e => { const u = new URL(e.href || e.src, location.href);
                           return u.protocol !== 'data:' && u.origin !== location.origin; }).length,
            })"""
        )
        assert inline == {
            "scripts": 0,
            "external": 0,
            "styleAttrs": 0,
            "styleTags": 0,
            "handlers": 0,
            "foreign": 0,
        }, path
    # the browser enforces it: an injected inline script does not run and is reported
    await page.goto(box.url + "/status")
    ran = await page.evaluate(
        """() => new Promise(done => {
            document.addEventListener('securitypolicyviolation', () => done(window.__pwned === true));
            const s = document.createElement('script');
            s.textContent = 'window.__pwned = true';
            document.body.append(s);
        })"""
    )
    assert ran is False
    assert any("script-src" in v for v in page.csp_violations)
    assert not page.js_errors
