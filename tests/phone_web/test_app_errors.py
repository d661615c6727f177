"""The box's typed answers to a question, in plain words on the page: quota (with the wait),
blocked, head office unreachable (a question that may not wait is not queued), busy (the session
goes on after each); and a box that cannot be reached."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from edgebox.session import messages as app
from tests.phone_web.support import Web, start_box, stop_box


class Refusing:
    """Answers the question named by its first word with that typed error, anything else with echo."""

    async def respond(self, prompt: app.Prompt, ctx: Any) -> AsyncIterator[str | app.Done]:
        text = prompt.messages[-1].content
        kind = text.split()[0]
        if kind in {k.value for k in app.ErrorKind}:
            err = app.MessageError(app.ErrorKind(kind), "refused for the test")
            if kind == "quota_exceeded":
                err.retry_after_s = 600.0
            raise err
        yield text
        yield app.Done(id=prompt.id, source="echo")


async def test_typed_errors_in_plain_words(web: Web, tmp_path: Path) -> None:
    box = await start_box(tmp_path / "box", responder=Refusing())
    stopped = False
    try:
        await web.page.goto(f"{web.base}/phone/?ws={box.url}")
        await expect(web.page.locator("body")).to_have_attribute("data-ready", "1")
        await web.page.fill("#payload", box.invite().encode())
        await web.page.click("#pair")
        await expect(web.page.locator("#status")).to_have_text("Connected")
        for kind, words in (
            ("quota_exceeded", "used its AI quota for now. Try again in about 10 minute(s)."),
            ("injection_blocked", "The box blocked this question"),
            ("upstream_unavailable", "The box cannot reach head office right now"),
            ("busy", "The box is busy right now"),
        ):
            await web.page.fill("#question", f"{kind} please")
            await web.page.click("#ask")
            await expect(web.page.locator("#error")).to_have_attribute("data-code", kind)
            await expect(web.page.locator("#error")).to_contain_text(words)
            await expect(web.page.locator("#status")).to_have_text("Connected")  # the session goes on
        await web.page.fill("#question", "an ordinary question")
        await web.page.click("#ask")
        await expect(web.page.locator("#answer")).to_have_attribute("data-state", "stop")
        await expect(web.page.locator("#error")).to_be_hidden()
        assert box.server.stats.sessions == 1

        # The box switched off: the page says it cannot reach it, and keeps the question.
        await stop_box(box)
        stopped = True
        await expect(web.page.locator("#status")).to_have_text("Paired · not connected")
        await web.page.fill("#question", "anyone there")
        await web.page.click("#ask")
        await expect(web.page.locator("#error")).to_have_attribute("data-code", "link_closed")
        await expect(web.page.locator("#error")).to_contain_text("Not connected to the box")
        assert await web.page.input_value("#question") == "anyone there"
        assert web.errors == []
    finally:
        if not stopped:
            await stop_box(box)
