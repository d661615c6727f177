"""The page's application messages (lib/messages.js) against the Python schema they mirror
(edgebox.session.messages.json_schema()): every `done` finish_reason the box may send decodes in
the browser, and a prompt the page encodes with "may wait" decodes in Python with `can_wait`."""

from __future__ import annotations

import json

from edgebox.session import messages as app
from tests.phone_web.support import Web


async def test_page_messages_follow_the_python_schema(web: Web) -> None:
    defs = app.json_schema()["$defs"]
    reasons = defs["Done"]["properties"]["finish_reason"]["enum"]
    assert "queued" in reasons
    for reason in reasons:
        raw = app.encode(app.Done(id="r-1", finish_reason=reason)).decode()
        decoded = await web.module(
            "/phone/lib/messages.js",
            "m.decodeBoxMessage(new TextEncoder().encode(args[0]))",
            raw,
        )
        assert decoded["finish_reason"] == reason and decoded["id"] == "r-1"

    sent = await web.module(
        "/phone/lib/messages.js",
        "new TextDecoder().decode(m.encodePrompt('q-1', 'open?', {canWait: true, maxTokens: 64}))",
    )
    prompt = app.decode(sent.encode())
    assert isinstance(prompt, app.Prompt)
    assert prompt.options.can_wait is True and prompt.options.max_tokens == 64
    plain = app.decode(
        (
            await web.module(
                "/phone/lib/messages.js", "new TextDecoder().decode(m.encodePrompt('q-2', 'hi'))"
            )
        ).encode()
    )
    assert isinstance(plain, app.Prompt) and plain.options.can_wait is False
    assert set(json.loads(sent)["options"]) <= set(defs["Options"]["properties"])
