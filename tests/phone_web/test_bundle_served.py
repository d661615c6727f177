"""The bundle as the box serves it: at /phone/ of the admin HTTPS server (the box's own certificate),
public (no admin login), its own CSP/Permissions-Policy, installable, and working offline after the
first load through its service worker. Plus the bundle's own consistency checks."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import expect

from edgebox import phone_web
from tests.admin.conftest import start_box, stop_box
from tests.phone_web.support import CHROMIUM, launch, serve_static


def test_service_worker_caches_the_whole_bundle() -> None:
    sw = (phone_web.BUNDLE / "sw.js").read_text()
    listed = set(re.findall(r'^\s+"([^"]+)",$', sw.split("const FILES = [", 1)[1].split("];", 1)[0], re.M))
    served = set(phone_web.bundle_files()) - {"sw.js"}
    assert listed - {"./"} == served


def test_routes_serve_only_bundle_files(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "notes.txt").write_text("not served")
    paths = {r.path for r in phone_web.routes("/p/", tmp_path)}  # type: ignore[attr-defined]
    assert paths == {"/p", "/p/", "/p/index.html"}
    with pytest.raises(ValueError):
        phone_web.routes("p")


@pytest.fixture
async def admin_box(tmp_path: Path) -> AsyncIterator[Any]:
    b = await start_box(tmp_path)
    yield b
    await stop_box(b)


async def test_phone_without_slash_redirects_before_the_admin_login(admin_box: Any) -> None:
    """`/phone` is public like `/phone/`: a phone that types the address without the slash gets the
    page, not the admin set-up or login page (before and after the admin password exists)."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        for has_password in (False, True):
            if has_password:
                admin_box.service.records.set_password("correct horse battery staple")
            async with http.get(admin_box.url + "/phone", ssl=False, allow_redirects=False) as r:
                assert r.status == 308 and r.headers["Location"] == "/phone/"
            async with http.get(admin_box.url + "/phone", ssl=False) as r:
                assert r.status == 200 and r.url.path == "/phone/"
                assert 'id="pair-section"' in await r.text()
            async with http.get(admin_box.url + "/phonebook", ssl=False, allow_redirects=False) as r:
                assert r.status == 303  # only the exact path is public


async def test_box_serves_the_phone_page_offline_capable(admin_box: Any) -> None:
    pw, browser = await launch()
    try:
        # The box's own certificate is not trusted by a browser that was not told to: a phone must
        # trust it first (docs/phone-web.md), or be served the bundle from another HTTPS host.
        strict = await browser.new_context()
        page = await strict.new_page()
        with pytest.raises(PlaywrightError, match="ERR_CERT_AUTHORITY_INVALID"):
            await page.goto(admin_box.url + "/phone/")
        await strict.close()

        # A phone that trusts the box's certificate (here: certificate errors ignored).
        ctx = await browser.new_context(ignore_https_errors=True)
        page = await ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        response = await page.goto(admin_box.url + "/phone/")
        assert response is not None and response.status == 200  # no admin login needed
        headers = await response.all_headers()
        assert headers["permissions-policy"] == "camera=(self), microphone=()"
        assert "connect-src 'self' ws: wss:" in headers["content-security-policy"]
        assert headers["strict-transport-security"]  # the admin server's other headers still apply
        await expect(page.locator("body")).to_have_attribute("data-ready", "1")
        assert await page.evaluate("isSecureContext")
        manifest = await page.request.get(admin_box.url + "/phone/manifest.webmanifest")
        assert manifest.headers["content-type"] == "application/manifest+json"
        assert (await manifest.json())["display"] == "standalone"

        # Chromium refuses a service worker under a certificate it does not trust, even when the
        # page itself was let through: the page says offline use is unavailable (measured here).
        await expect(page.locator("#offline-note")).to_have_attribute("data-offline", "unavailable")
        await expect(page.locator("#offline-note")).to_be_visible()
        assert errors == []
        await ctx.close()
    finally:
        await browser.close()
        await pw.stop()


async def test_works_offline_after_first_load(web: Any) -> None:
    """Served from a trusted origin (http://127.0.0.1 stands in for any HTTPS host), the service
    worker caches the bundle and the page opens with the network gone and the server stopped."""
    page = web.page
    await expect(page.locator("#offline-note")).to_have_attribute("data-offline", "ready")
    await page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    await page.reload()
    assert await page.evaluate("!!navigator.serviceWorker.controller")
    await page.context.set_offline(True)
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "1")
    await expect(page.locator("#pair")).to_be_visible()
    manifest = await page.evaluate("document.querySelector('link[rel=manifest]').href")
    assert manifest.endswith("/phone/manifest.webmanifest")
    assert web.errors == []


async def test_the_page_is_installable(tmp_path: Path) -> None:
    """Chromium's own installability check (CDP `Page.getInstallabilityErrors`) finds nothing to
    object to, and the app's identity is the page's own address wherever the bundle is served (a
    manifest `id` of "./" resolved to the origin's root: every app of that origin would clash)."""
    from playwright.async_api import async_playwright

    runner, base = await serve_static()
    pw = await async_playwright().start()
    try:
        # A persistent profile: an incognito context is never installable ("in-incognito").
        ctx = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True
        )
        page = await ctx.new_page()
        await page.goto(base + "/phone/")
        await expect(page.locator("body")).to_have_attribute("data-ready", "1")
        await page.evaluate("navigator.serviceWorker.ready.then(() => true)")
        cdp = await ctx.new_cdp_session(page)
        assert (await cdp.send("Page.getInstallabilityErrors"))["installabilityErrors"] == []
        manifest = await cdp.send("Page.getAppManifest")
        assert manifest["errors"] == []
        assert manifest["manifest"]["startUrl"] == base + "/phone/"
        assert (await cdp.send("Page.getAppId"))["appId"] == base + "/phone/"
        sizes = {i["sizes"] for i in manifest["manifest"]["icons"] if i["type"] == "image/png"}
        assert {"192x192", "512x512"} <= sizes
        await ctx.close()
    finally:
        await pw.stop()
        await runner.cleanup()
