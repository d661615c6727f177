"""Pairing by scanning: the camera path of the page (getUserMedia -> <video> -> BarcodeDetector ->
pair), with Chromium's fake camera. Debian's Chromium on Linux has no BarcodeDetector (Chrome ships
it on Android, macOS and ChromeOS), so the test gives the page a stand-in detector that "sees" the
code once the camera delivers frames; without one the page says so and offers the paste field."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import expect

from tests.phone_web.support import Box, launch, serve_static, start_box, stop_box

_DETECTOR = """
window.BarcodeDetector = class {
  static async getSupportedFormats() { return ['qr_code', 'ean_13']; }
  constructor(opts) { if (!opts.formats.includes('qr_code')) throw new TypeError('no qr'); }
  async detect(video) {
    window.__frames = (window.__frames || 0) + 1;
    return video.videoWidth > 0 && window.__frames > 2 ? [{rawValue: window.__qr}] : [];
  }
};
"""


async def test_scan_then_pair_and_fallback_without_detector(tmp_path: Path) -> None:
    box: Box = await start_box(tmp_path / "box")
    runner, base = await serve_static()
    pw, browser = await launch(
        extra_args=("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
    )
    try:
        # No detector (this Chromium): the page says the camera cannot scan and keeps the paste field.
        plain = await browser.new_context()
        page = await plain.new_page()
        await page.goto(f"{base}/phone/?ws={box.url}")
        await expect(page.locator("body")).to_have_attribute("data-ready", "1")
        await page.click("#scan")
        await expect(page.locator("#error")).to_have_attribute("data-code", "camera_unavailable")
        await expect(page.locator("#payload")).to_be_focused()
        await plain.close()

        # With a detector: the fake camera streams, the code is "seen", the phone pairs, the camera stops.
        ctx = await browser.new_context(permissions=["camera"])
        await ctx.add_init_script(_DETECTOR)
        page = await ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(f"{base}/phone/?ws={box.url}")
        await expect(page.locator("body")).to_have_attribute("data-ready", "1")
        await page.evaluate("(code) => { window.__qr = code; }", box.invite().encode())
        await page.click("#scan")
        await expect(page.locator("#status")).to_have_text("Connected")
        assert await page.evaluate("window.__frames") >= 3
        assert await page.evaluate("document.getElementById('camera').srcObject") is None
        await expect(page.locator("#scanner")).to_be_hidden()
        assert len(box.state.store.phones.list_phones(include_revoked=True)) == 1
        assert errors == []
        await ctx.close()
    finally:
        await browser.close()
        await pw.stop()
        await runner.cleanup()
        await stop_box(box)
