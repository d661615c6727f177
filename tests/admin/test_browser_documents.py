"""Documents: upload (markdown, PDF) with progress while chunked and embedded by the local model, delete."""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from .conftest import Box, real_embed, set_up, shot, start_box, stop_box

HANDBOOK = """# Branch handbook

## Opening hours

The branch opens at 08:30 on weekdays. On Saturdays the counter closes at 12:00.

## Lost cards

A customer who lost a debit card must call the card hotline first; the teller then orders a
replacement card, which arrives by post within five working days.
""" + "\n\n".join(f"Filler paragraph {i} about procedures that are not the point." * 3 for i in range(40))


def make_pdf(text: str) -> bytes:
    """A one-page PDF with `text` (correct xref offsets, Helvetica)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture
async def mbox(tmp_path: Path) -> AsyncIterator[Box]:
    embed = real_embed()
    if embed is None:
        pytest.fail("the local models are missing: run `make models` (make test does)")
    b = await start_box(tmp_path, embed=embed)
    yield b
    await stop_box(b)


async def test_upload_markdown_with_progress_then_search_finds_it(
    page: Any, mbox: Box, tmp_path: Path
) -> None:
    box = mbox
    await set_up(page, box)
    doc = tmp_path / "handbook.md"
    doc.write_text(HANDBOOK)
    # The embedder waits for the test once, so the page is seen in the embedding stage however
    # fast the machine is (no timing involved).
    embed, gate = box.backend.embed, threading.Event()
    assert embed is not None

    def gated(texts: list[str]) -> Any:
        gate.wait(120)
        return embed(texts)

    box.backend.embed = gated
    await page.goto(box.url + "/documents")
    stages: list[str] = []
    await page.expose_function("recordStage", lambda text: stages.append(text))
    await page.evaluate(
        """() => { const el = document.getElementById('upload-stage');
        new MutationObserver(() => window.recordStage(el.textContent)).observe(
          el, {childList: true, characterData: true, subtree: true}); }"""
    )
    await page.set_input_files("input[type=file]", str(doc))
    await page.click("#upload button[type=submit]")
    await expect(page.locator("#upload-progress")).to_be_visible()
    await expect(page.locator("#upload-stage")).to_have_text(
        re.compile(r"^Embedding passages: 0 of \d+ done…$")
    )
    await shot(page, "documents-progress", full_page=False)
    gate.set()
    await page.wait_for_url("**/documents?notice=*", timeout=120_000)
    embedding = [i for i, t in enumerate(stages) if re.fullmatch(r"Embedding passages: \d+ of \d+ done…", t)]
    added = [i for i, t in enumerate(stages) if re.fullmatch(r"Added handbook\.md: \d+ passages\.", t)]
    assert embedding and added and embedding[0] < added[0], stages
    assert all(not t.startswith(("reading", "chunking", "storing", "queued")) for t in stages), stages
    row = page.locator("#documents-table tbody tr")
    assert await row.count() == 1
    assert "Branch handbook" in await row.inner_text()  # the markdown title
    await shot(page, "documents")
    (stored,) = box.state.store.documents.list_documents()
    assert stored.chunk_count > 3  # chunked
    embed = real_embed()
    assert embed is not None
    hits = box.state.store.documents.search(
        embed(["How long until a replacement debit card arrives?"])[0], k=1
    )
    assert hits and hits[0].doc_id == stored.doc_id and "five working days" in hits[0].text
    audit = [a for a in box.service.records.audit_entries() if a.action == "document_added"]
    assert audit[0].outcome == "ok" and "handbook.md" in audit[0].detail
    assert "lost a debit card" not in repr(box.service.records.audit_entries())  # no document text
    # delete
    page.once("dialog", lambda d: d.accept())
    await page.click("#documents-table button:has-text('Delete')")
    await page.wait_for_selector("text=Document deleted")
    assert box.state.store.documents.list_documents() == []
    assert box.service.records.audit_entries()[0].action == "document_removed"


async def test_upload_pdf_without_script_and_refuse_other_files(
    browser: Any, mbox: Box, tmp_path: Path
) -> None:
    box = mbox
    context = await browser.new_context(ignore_https_errors=True, java_script_enabled=False)
    page = await context.new_page()
    try:
        code = box.service.setup_codes.create()
        await page.goto(box.url + "/setup")
        await page.fill("input[name=code]", code)
        await page.fill("input[name=password]", "correct horse battery staple")
        await page.fill("input[name=confirm]", "correct horse battery staple")
        await page.click("button[type=submit]")
        pdf = tmp_path / "rates.pdf"
        pdf.write_bytes(make_pdf("Savings accounts pay 2.5 percent interest from January."))
        await page.goto(box.url + "/documents")
        await page.set_input_files("input[type=file]", str(pdf))
        await page.click("#upload button[type=submit]")  # plain form post: the page waits, then redirects
        await page.wait_for_selector("text=Added rates.pdf")
        (stored,) = box.state.store.documents.list_documents()
        embed = real_embed()
        assert embed is not None
        hit = box.state.store.documents.search(embed(["interest on savings"])[0], k=1)[0]
        assert hit.doc_id == stored.doc_id and "2.5 percent" in hit.text
        bad = tmp_path / "tool.exe"
        bad.write_bytes(b"MZ\x90\x00")
        await page.set_input_files("input[type=file]", str(bad))
        await page.click("#upload button[type=submit]")
        assert "upload a PDF (.pdf), text (.txt) or markdown (.md) file" in await page.inner_text(
            ".msg.error"
        )
        fake = tmp_path / "fake.pdf"
        fake.write_text("not a pdf at all")
        await page.set_input_files("input[type=file]", str(fake))
        await page.click("#upload button[type=submit]")
        assert "not a PDF" in await page.inner_text(".msg.error")
        assert len(box.state.store.documents.list_documents()) == 1  # nothing half-added
    finally:
        await context.close()
