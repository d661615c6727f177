"""First set-up, sign-in, lock-out, session expiry, cookies and headers -- in Debian's Chromium."""

from __future__ import annotations

from typing import Any

from edgebox.admin.security import COOKIE_NAME

from .conftest import IDLE_S, LOCKOUT_S, PASSWORD, Box, set_up, shot, sign_in


async def test_first_set_up_needs_the_one_time_code(page: Any, box: Box) -> None:
    await page.goto(box.url + "/phones")
    assert page.url.endswith("/setup")  # nothing is reachable before set-up
    await shot(page, "setup")
    code = box.service.setup_codes.create()
    await page.fill("input[name=code]", "WRONG-CODE0-00000")
    await page.fill("input[name=password]", PASSWORD)
    await page.fill("input[name=confirm]", PASSWORD)
    await page.click("button[type=submit]")
    assert "wrong or has expired" in await page.inner_text(".msg.error")
    assert not box.service.records.has_password()
    await page.fill("input[name=code]", code)
    await page.fill("input[name=password]", PASSWORD)
    await page.fill("input[name=confirm]", PASSWORD + "x")
    await page.click("button[type=submit]")
    assert "do not match" in await page.inner_text(".msg.error")
    assert box.service.setup_codes.pending()  # a refused form does not use up the code
    await page.fill("input[name=code]", code.lower().replace("-", " "))  # forgiving about case/spacing
    await page.fill("input[name=password]", PASSWORD)
    await page.fill("input[name=confirm]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/status")
    assert box.service.records.has_password()
    # argon2id, never the password itself
    row = box.state.store.db.query_one("SELECT password_hash FROM admin_account")
    assert row[0].startswith("$argon2id$") and PASSWORD not in row[0]
    # the code was single use and set-up is now closed
    assert not box.service.setup_codes.pending()
    await page.goto(box.url + "/setup")
    assert page.url.endswith("/login") or page.url.endswith("/status")
    actions = [a.action for a in box.service.records.audit_entries()]
    assert "setup" in actions and "setup_failed" in actions


async def test_sign_in_lock_out_and_recovery(page: Any, box: Box) -> None:
    await set_up(page, box)
    await page.click("button:has-text('Sign out')")
    await page.wait_for_url("**/login?bye=1")
    await shot(page, "login")
    for _ in range(2):
        await sign_in(page, box, "not the password")
        assert "Wrong password" in await page.inner_text(".msg.error")
    await sign_in(page, box, "not the password")  # third failure: locked out
    assert "Too many failed attempts" in await page.inner_text(".msg.error")
    await sign_in(page, box)  # the right password is refused while locked
    assert "Too many failed attempts" in await page.inner_text(".msg.error")
    assert page.url.endswith("/login")
    await shot(page, "login-locked")
    box.clock.advance(LOCKOUT_S + 1)
    await sign_in(page, box)
    await page.wait_for_url("**/status")
    actions = [a.action for a in box.service.records.audit_entries()]
    assert actions.count("login_failed") == 3
    assert "login_locked" in actions and "login_refused" in actions and actions[0] == "login"


async def test_session_cookie_flags_and_idle_expiry(page: Any, box: Box) -> None:
    await set_up(page, box)
    cookies = {c["name"]: c for c in await page.context.cookies()}
    c = cookies[COOKIE_NAME]
    assert c["secure"] and c["httpOnly"] and c["sameSite"] == "Strict" and c["path"] == "/"
    assert c["expires"] == -1  # a session cookie: gone with the browser
    assert await page.evaluate("document.cookie") == ""  # not readable by script
    # a fresh token at sign-in: a cookie planted before login (session fixation) is worth nothing
    await page.click("button:has-text('Sign out')")
    await page.goto(box.url + "/login")
    anonymous = {c["name"]: c["value"] for c in await page.context.cookies()}[COOKIE_NAME]
    await sign_in(page, box)
    await page.wait_for_url("**/status")
    signed_in = {c["name"]: c["value"] for c in await page.context.cookies()}[COOKIE_NAME]
    assert signed_in != anonymous and box.service.app.sessions.lookup(anonymous, box.clock()) is None
    box.clock.advance(IDLE_S - 5)
    await page.goto(box.url + "/phones")  # activity just before the limit keeps it alive
    assert page.url.endswith("/phones")
    box.clock.advance(IDLE_S - 5)
    await page.goto(box.url + "/phones")
    assert page.url.endswith("/phones")
    box.clock.advance(IDLE_S + 1)
    await page.goto(box.url + "/phones")
    assert "/login?expired=1" in page.url
    assert "session has ended" in await page.inner_text(".msg.notice")
    # polling does not keep a session alive
    await sign_in(page, box)
    await page.wait_for_url("**/status")
    resp = await page.request.get(box.url + "/status/live", headers={"X-Edgebox-Poll": "1"})
    assert resp.status == 200
    box.clock.advance(IDLE_S / 2 + 1)
    assert (await page.request.get(box.url + "/status/live", headers={"X-Edgebox-Poll": "1"})).status == 200
    box.clock.advance(IDLE_S / 2 + 1)
    assert (await page.request.get(box.url + "/status/live", headers={"X-Edgebox-Poll": "1"})).status == 403
