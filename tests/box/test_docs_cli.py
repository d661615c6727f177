"""`edgebox box docs add|list|remove` against the running daemon (its control socket), the CLI in a
subprocess as an operator runs it: a .txt, a .md and a PDF with a text layer (built here) are added
with a progress bar, listed with their passage counts, answer a phone's question locally with a
citation, and one is removed again; an unsupported file and a corrupt PDF get typed errors and
leave the store as it was, also when they come with good files in the same command."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

from pypdf import PdfReader

from edgebox.box.textmodels import TextModels
from edgebox.pki.ca import DeviceCA
from tests.box.support import RunningBox, box_config, enrol_dev_box, gateway_section, running_box
from tests.gateway.support import GatewayFactory, StubUpstream

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}

HOURS_MD = (
    "# Branch opening hours\n\nThe Riverside branch is open Monday to Friday from 9:00 to 17:00 and on "
    "Saturday from 9:00 to 12:00. It is closed on Sundays and public holidays.\n"
)
PARKING_TXT = (
    "Parking at the branch\n\nCustomers can park free of charge for up to two hours in the car park "
    "behind the Riverside branch. The entrance is on Mill Street; ask the front desk for a ticket.\n"
)
CURRENCY_LINES = [
    "Foreign currency exchange at the Riverside branch.",
    "",
    "Orders of foreign currency above 1000 euros must be placed",
    "two working days in advance at the front desk.",
]


def text_pdf(lines: list[str]) -> bytes:
    """A minimal one-page PDF whose text is a real text layer (Helvetica, one line per entry).
    pypdf reads PDFs but has no API to draw text, so the file is written by hand."""

    def esc(t: str) -> str:
        return t.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    ops = ["BT", "/F1 11 Tf", "14 TL", "50 780 Td"]
    for line in lines:
        ops += [f"({esc(line)}) Tj", "T*"]
    ops.append("ET")
    stream = "\n".join(ops).encode("latin-1")
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


async def _edgebox(box: RunningBox, *args: str) -> subprocess.CompletedProcess[str]:
    """The operator's CLI in a subprocess (the loop the daemon runs on stays free)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgebox",
        "box",
        "--state-dir",
        str(box.daemon.cfg.state_dir),
        *args,
        stdout=PIPE,
        stderr=PIPE,
        env=ENV,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return subprocess.CompletedProcess(list(args), proc.returncode or 0, out.decode(), err.decode())


def _listing(stdout: str) -> dict[str, tuple[int, int]]:
    """`docs list` lines -> {file name: (doc id, chunks)}."""
    out = {}
    for line in stdout.splitlines():
        m = re.match(r"\s*(\d+)\s+(\d+) chunks\s+.*\((.+)\)$", line)
        assert m, f"unexpected docs list line {line!r}"
        out[Path(m.group(3)).name] = (int(m.group(1)), int(m.group(2)))
    return out


async def _store_counts(box: RunningBox) -> tuple[int, int]:
    def counts() -> tuple[int, int]:
        db = box.daemon.store.db
        docs = db.query_one("SELECT count(*) FROM documents")
        chunks = db.query_one("SELECT count(*) FROM chunks")
        return int(docs[0]), int(chunks[0])

    result: tuple[int, int] = await box.daemon.worker.call(counts)
    return result


async def test_docs_add_list_remove_through_the_running_daemon(
    tmp_path: Path,
    pki: DeviceCA,
    upstream: StubUpstream,
    make_gateway: GatewayFactory,
    text_models: TextModels,
) -> None:
    gw = await make_gateway()
    enrol_dev_box(tmp_path, pki)
    cfg = box_config(tmp_path, gateway=gateway_section(pki, gw.port), cache={"enabled": False})
    files = tmp_path / "docs"
    files.mkdir()
    (files / "hours.md").write_text(HOURS_MD)
    (files / "parking.txt").write_text(PARKING_TXT)
    pdf = text_pdf(CURRENCY_LINES)
    assert "two working days" in (PdfReader(io.BytesIO(pdf)).pages[0].extract_text() or "")
    (files / "currency.pdf").write_bytes(pdf)
    names = ["hours.md", "parking.txt", "currency.pdf"]
    async with running_box(tmp_path, cfg, text_models) as box:
        r = await _edgebox(box, "docs", "add", *(str(files / n) for n in names))
        assert r.returncode == 0, r.stderr
        # The progress bar (stderr is not a terminal here: one finished bar per file).
        for name in names:
            bar = re.search(rf"^{re.escape(name)}\s+\[(#+)\] (\d+)/(\d+) chunks$", r.stderr, re.M)
            assert bar is not None, r.stderr
            assert len(bar.group(1)) == 30 and bar.group(2) == bar.group(3) and int(bar.group(2)) >= 1
        added = r.stdout
        assert "Branch opening hours" in added and "currency" in added
        r = await _edgebox(box, "docs", "list")
        assert r.returncode == 0, r.stderr
        listed = _listing(r.stdout)
        assert set(listed) == set(names)
        stored = {Path(d.source).name: d for d in await box.daemon.control.list_documents()}
        for name in names:
            assert listed[name] == (stored[name].doc_id, stored[name].chunks) and stored[name].chunks >= 1
        # A phone's question is answered from the PDF, locally, with its citation.
        phone, _ = await box.pair()
        answer = await phone.ask("How far in advance must I order foreign currency?")
        assert answer.done is not None and answer.done.source == "local", answer.text
        assert "two working days in advance" in answer.text
        assert re.search(r"\[\d\] currency \(currency\.pdf, passage 1\)", answer.text), answer.text
        assert upstream.requests == []
        # Remove one (by the source it was added from): gone from the list and from retrieval.
        r = await _edgebox(box, "docs", "remove", str(files / "parking.txt"))
        assert r.returncode == 0 and r.stdout.startswith(f"removed {listed['parking.txt'][0]} "), r
        r = await _edgebox(box, "docs", "list")
        assert set(_listing(r.stdout)) == {"hours.md", "currency.pdf"}
        answer = await phone.ask("Where can I park my car near the branch?")
        assert "parking.txt" not in answer.text
        r = await _edgebox(box, "docs", "remove", str(files / "parking.txt"))
        assert r.returncode == 2 and "error [document_unknown]" in r.stderr
        await phone.close()


async def test_bad_documents_get_typed_errors_and_change_nothing(
    tmp_path: Path,
    pki: DeviceCA,
    upstream: StubUpstream,
    make_gateway: GatewayFactory,
    text_models: TextModels,
) -> None:
    gw = await make_gateway()
    enrol_dev_box(tmp_path, pki)
    cfg = box_config(tmp_path, gateway=gateway_section(pki, gw.port))
    files = tmp_path / "docs"
    files.mkdir()
    (files / "hours.md").write_text(HOURS_MD)
    (files / "parking.txt").write_text(PARKING_TXT)
    (files / "minutes.docx").write_bytes(b"PK\x03\x04 not a document the box reads")
    pdf = text_pdf(CURRENCY_LINES)
    (files / "truncated.pdf").write_bytes(pdf[: len(pdf) // 3])
    (files / "garbage.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 8)
    async with running_box(tmp_path, cfg, text_models) as box:
        r = await _edgebox(box, "docs", "add", str(files / "hours.md"))
        assert r.returncode == 0, r.stderr
        before = await _store_counts(box)
        cases = [
            (["minutes.docx"], "document_unsupported", "only .txt, .md and .pdf"),
            (["truncated.pdf"], "document_invalid", "truncated.pdf"),
            (["garbage.pdf"], "document_invalid", "garbage.pdf"),
            # A bad file among good ones: the command fails as a whole, the good ones are not added.
            (["parking.txt", "garbage.pdf"], "document_invalid", "garbage.pdf"),
            (["parking.txt", "minutes.docx"], "document_unsupported", "minutes.docx"),
        ]
        for batch, code, text in cases:
            r = await _edgebox(box, "docs", "add", *(str(files / n) for n in batch))
            assert r.returncode == 2, (batch, r.stdout, r.stderr)
            assert f"error [{code}]" in r.stderr and text in r.stderr, (batch, r.stderr)
            assert "Traceback" not in r.stderr and "internal" not in r.stderr
            assert await _store_counts(box) == before, batch
        r = await _edgebox(box, "docs", "list")
        assert set(_listing(r.stdout)) == {"hours.md"}
        # Two files of the same name from different folders are two documents, each its own text.
        (files / "a").mkdir()
        (files / "b").mkdir()
        (files / "a" / "notes.txt").write_text(PARKING_TXT)
        (files / "b" / "notes.txt").write_text(HOURS_MD.replace("# Branch opening hours\n\n", ""))
        r = await _edgebox(box, "docs", "add", str(files / "a" / "notes.txt"), str(files / "b" / "notes.txt"))
        assert r.returncode == 0, r.stderr

        def texts() -> dict[str, str]:
            rows = box.daemon.store.db.query_all(
                "SELECT d.source, c.text FROM documents d JOIN chunks c ON c.doc_id = d.doc_id"
            )
            return {str(s): str(t) for s, t in rows}

        by_source = await box.daemon.worker.call(texts)
        assert "car park" in by_source[str(files / "a" / "notes.txt")]
        assert "Saturday" in by_source[str(files / "b" / "notes.txt")]
