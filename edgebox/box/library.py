"""Branch documents on the box: text, Markdown and PDF in; cited local answers out.

Theory of operation: `extract_text` reads a file (UTF-8 text / Markdown as is; PDF page by page
with pypdf, the maintained pure-Python PDF library), `chunk_text` cuts it into overlapping passages
on paragraph and sentence boundaries. `DocumentLibrary.add_files` first reads and cuts every file
(so one bad file fails the whole call before anything is stored), then embeds each file's passages
in batches (reporting progress after each batch) and stores the document and all its chunks in one
transaction of the encrypted store, whose in-memory vector index follows the committed rows.
`search` is an exact cosine top-k over those chunks; `local_answer` turns the best passages into an
answer that says plainly that it is local (from the branch documents, not the AI service) and cites
each passage as [n] title, source and passage number. Document text reaches an upstream model only fenced
(edgebox.pipeline.context), never here.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebox.box.config import DocumentsSection
from edgebox.errors import EdgeboxError
from edgebox.store.aio import StoreWorker
from edgebox.store.documents import ChunkHit, ChunkInput, Document

SUPPORTED = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown", ".pdf": "pdf"}
EMBED_BATCH = 16
LOCAL_PREFIX = "[local answer from the branch documents; the AI service was not asked]"
_PARA = re.compile(r"\n\s*\n")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_HEADING = re.compile(r"(^|\s)#{1,6}\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class DocumentError(EdgeboxError):
    code = "document_invalid"


class UnsupportedDocumentError(DocumentError):
    code = "document_unsupported"


def extract_text(path: Path, *, max_bytes: int) -> tuple[str, str]:
    """(title, text) of a .txt/.md/.pdf file."""
    kind = SUPPORTED.get(path.suffix.lower())
    if kind is None:
        raise UnsupportedDocumentError(
            f"{path.name}: only .txt, .md and .pdf documents are supported", code="document_unsupported"
        )
    try:
        size = path.stat().st_size
    except OSError:
        raise DocumentError(f"cannot read {path.name}") from None
    if size > max_bytes:
        raise DocumentError(f"{path.name} is larger than {max_bytes} bytes")
    title = path.stem
    if kind == "pdf":
        text = _pdf_text(path)
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DocumentError(f"{path.name} is not UTF-8 text") from None
        if kind == "markdown":
            m = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
            if m:
                title = m.group(1).strip()[:200]
    text = _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    if not text.strip():
        raise DocumentError(f"{path.name} contains no text")
    return title, text


def _pdf_text(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            raise DocumentError(f"{path.name} is an encrypted PDF")
        return "\n\n".join((page.extract_text() or "") for page in reader.pages)
    except DocumentError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError):
        raise DocumentError(f"{path.name} is not a readable PDF") from None


def chunk_text(text: str, *, size: int, overlap: int) -> list[str]:
    """Passages of at most `size` characters, cut at paragraph/sentence ends, `overlap` carried over."""
    pieces: list[str] = []
    for para in _PARA.split(text):
        para = " ".join(para.split())
        if not para:
            continue
        if len(para) <= size:
            pieces.append(para)
            continue
        for sentence in _SENTENCE.split(para):
            while len(sentence) > size:
                pieces.append(sentence[:size])
                sentence = sentence[size:]
            if sentence:
                pieces.append(sentence)
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 1 + len(piece) > size:
            chunks.append(current)
            tail = current[-overlap:] if overlap else ""
            if tail and " " in tail:
                tail = tail[tail.index(" ") + 1 :]
            current = (tail + " " + piece).strip() if tail and len(tail) + 1 + len(piece) <= size else piece
        else:
            current = f"{current} {piece}".strip() if current else piece
    if current:
        chunks.append(current)
    return chunks


@dataclass(frozen=True, slots=True)
class Passage:
    number: int
    title: str
    source: str
    ordinal: int
    text: str
    score: float


Progress = Callable[[str, int, int], None]


class DocumentLibrary:
    def __init__(self, cfg: DocumentsSection, worker: StoreWorker, models: Any) -> None:
        self.cfg = cfg
        self.worker = worker
        self.models = models

    async def add_files(
        self,
        paths: Sequence[Path],
        *,
        progress: Progress | None = None,
        sources: Sequence[str] | None = None,
        replace: bool = True,
    ) -> list[Document]:
        if self.models is None:
            raise DocumentError(
                "documents need the local models: run `make models`", code="models_unavailable"
            )
        # Every file is read and cut first: one unsupported or unreadable file fails the whole call
        # before anything is embedded or stored (no half-added batch).
        prepared = [await asyncio.to_thread(self._prepare, path) for path in paths]
        out = []
        for i, (path, (title, text, chunks)) in enumerate(zip(paths, prepared, strict=True)):
            source = sources[i] if sources is not None else str(path.resolve())
            out.append(
                await self.worker.call(
                    self._add_one, path.name, source, title, text, chunks, progress, replace
                )
            )
        return out

    def _prepare(self, path: Path) -> tuple[str, str, list[str]]:
        title, text = extract_text(path, max_bytes=self.cfg.max_file_bytes)
        chunks = chunk_text(text, size=self.cfg.chunk_chars, overlap=self.cfg.chunk_overlap_chars)
        if not chunks:
            raise DocumentError(f"{path.name} contains no text")
        return title, text, chunks

    def _add_one(
        self,
        name: str,
        source: str,
        title: str,
        text: str,
        chunks: list[str],
        progress: Progress | None,
        replace: bool,
    ) -> Document:
        total = len(chunks)
        if progress is not None:
            progress(name, 0, total)
        inputs: list[ChunkInput] = []
        for start in range(0, total, EMBED_BATCH):
            batch = chunks[start : start + EMBED_BATCH]
            vectors = self.models.embed_passages(batch)
            inputs.extend(ChunkInput(t, v) for t, v in zip(batch, vectors, strict=True))
            if progress is not None:
                progress(name, len(inputs), total)
        digest = hashlib.sha256(text.encode()).digest()
        store = self.worker.store
        return store.documents.add_document(
            source[:1024], title[:512], inputs, replace=replace, content_sha256=digest
        )

    async def search(self, embedding: Any, k: int | None = None) -> list[Passage]:
        hits: list[ChunkHit] = await self.worker.call(
            self.worker.store.documents.search, embedding, k or self.cfg.top_k
        )
        return [
            Passage(n, h.title or Path(h.source).name, h.source, h.ordinal, h.text, h.score)
            for n, h in enumerate(hits, start=1)
        ]


def local_answer(passages: Sequence[Passage], *, offline: bool) -> str:
    """A cited answer from passages; says plainly that it is local (and why, when offline)."""
    why = " (the AI service is not reachable right now)" if offline else ""
    lines = [LOCAL_PREFIX[:-1] + why + "]", ""]
    for p in passages:
        text = _HEADING.sub(r"\1", p.text).strip()
        lines.append(f"[{p.number}] {text}")
    lines.append("")
    lines.append("Sources:")
    for p in passages:
        lines.append(f"[{p.number}] {p.title} ({Path(p.source).name}, passage {p.ordinal + 1})")
    return "\n".join(lines)
