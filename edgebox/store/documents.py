"""Documents and their embedded chunks, for local retrieval (RAG on the box).

Theory of operation: a document (unique `source`, e.g. a path or URI, plus title and content hash)
owns ordered chunks, each with its text and embedding. Adding a document and all its chunks is one
transaction; replacing a document (same source) deletes the old chunks (ON DELETE CASCADE) and
inserts the new ones in that same transaction. `search(query, k)` returns the exact top-k chunks by
cosine similarity from the in-memory `VectorIndex`, which follows the committed rows.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgebox.store import validation
from edgebox.store.db import Database
from edgebox.store.errors import AlreadyExistsError, InvalidInputError
from edgebox.store.index_set import IndexSet
from edgebox.store.vectors import EmbeddingLike, as_embedding, embedding_to_blob

MAX_SOURCE_CHARS = 1024
MAX_TITLE_CHARS = 512
MAX_CHUNK_CHARS = 16_000
MAX_CHUNKS_PER_DOCUMENT = 100_000
MAX_K = 1000


@dataclass(frozen=True, slots=True)
class ChunkInput:
    text: str
    embedding: EmbeddingLike


@dataclass(frozen=True, slots=True)
class Document:
    doc_id: int
    source: str
    title: str
    content_sha256: bytes
    created_at: float
    chunk_count: int


@dataclass(frozen=True, slots=True)
class ChunkHit:
    chunk_id: int
    doc_id: int
    ordinal: int
    text: str
    source: str
    title: str
    score: float


class DocumentRepository:
    def __init__(self, db: Database, dim: int, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self.dim = dim
        self._clock = clock
        self._index = IndexSet(db, dim, self._load_rows)

    @staticmethod
    def _load_rows(conn: Any) -> Any:
        cur = conn.execute("SELECT chunk_id, embedding FROM chunks")
        return (("", int(r[0]), bytes(r[1]), None) for r in cur)

    def add_document(
        self,
        source: str,
        title: str,
        chunks: Sequence[ChunkInput],
        *,
        replace: bool = False,
        content_sha256: bytes | None = None,
    ) -> Document:
        """Store a document and its chunks atomically. Same source: AlreadyExistsError unless replace."""
        validation.text(source, "document source", max_len=MAX_SOURCE_CHARS)
        validation.text(title, "document title", max_len=MAX_TITLE_CHARS, allow_empty=True)
        if not 0 < len(chunks) <= MAX_CHUNKS_PER_DOCUMENT:
            raise InvalidInputError(f"a document needs 1-{MAX_CHUNKS_PER_DOCUMENT} chunks")
        texts = [validation.text(c.text, "chunk text", max_len=MAX_CHUNK_CHARS) for c in chunks]
        vectors = np.stack([as_embedding(c.embedding, self.dim) for c in chunks])
        if content_sha256 is None:
            h = hashlib.sha256()
            for t in texts:
                h.update(t.encode())
                h.update(b"\x00")
            digest = h.digest()
        elif isinstance(content_sha256, bytes) and len(content_sha256) == 32:
            digest = content_sha256
        else:
            raise InvalidInputError("content_sha256 must be 32 bytes")
        now = self._clock()
        with self._db.transaction() as tx:
            old = tx.execute("SELECT doc_id FROM documents WHERE source = ?", (source,)).fetchone()
            old_chunk_ids: list[int] = []
            if old is not None:
                if not replace:
                    raise AlreadyExistsError("a document with this source already exists")
                old_chunk_ids = [
                    int(r[0]) for r in tx.execute("SELECT chunk_id FROM chunks WHERE doc_id = ?", (old[0],))
                ]
                tx.execute("DELETE FROM documents WHERE doc_id = ?", (old[0],))
            doc_id = int(
                tx.execute(
                    "INSERT INTO documents (source, title, content_sha256, created_at) VALUES (?, ?, ?, ?)",
                    (source, title, digest, now),
                ).lastrowid
            )
            chunk_ids: list[int] = []
            for ordinal, (text, vec) in enumerate(zip(texts, vectors, strict=True)):
                cur = tx.execute(
                    "INSERT INTO chunks (doc_id, ordinal, text, embedding) VALUES (?, ?, ?, ?)",
                    (doc_id, ordinal, text, embedding_to_blob(vec)),
                )
                chunk_ids.append(int(cur.lastrowid))

            def sync() -> None:
                self._index.remove(old_chunk_ids)
                self._index.add_many("", chunk_ids, vectors)

            tx.after_commit(sync)
        return Document(doc_id, source, title, digest, now, len(chunk_ids))

    def delete_document(self, doc_id: int) -> bool:
        with self._db.transaction() as tx:
            ids = [int(r[0]) for r in tx.execute("SELECT chunk_id FROM chunks WHERE doc_id = ?", (doc_id,))]
            n = tx.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,)).rowcount
            tx.after_commit(lambda: self._index.remove(ids))
        return bool(n)

    def get(self, doc_id: int) -> Document | None:
        row = self._db.query_one(
            "SELECT d.doc_id, d.source, d.title, d.content_sha256, d.created_at, "
            "(SELECT count(*) FROM chunks c WHERE c.doc_id = d.doc_id) FROM documents d WHERE d.doc_id = ?",
            (doc_id,),
        )
        return None if row is None else Document(row[0], row[1], row[2], bytes(row[3]), row[4], row[5])

    def find_by_source(self, source: str) -> Document | None:
        row = self._db.query_one("SELECT doc_id FROM documents WHERE source = ?", (source,))
        return None if row is None else self.get(int(row[0]))

    def list_documents(self) -> list[Document]:
        rows = self._db.query_all(
            "SELECT d.doc_id, d.source, d.title, d.content_sha256, d.created_at, "
            "(SELECT count(*) FROM chunks c WHERE c.doc_id = d.doc_id) FROM documents d ORDER BY d.doc_id"
        )
        return [Document(r[0], r[1], r[2], bytes(r[3]), r[4], r[5]) for r in rows]

    def chunk_count(self) -> int:
        row = self._db.query_one("SELECT count(*) FROM chunks")
        return 0 if row is None else int(row[0])

    def search(self, query: EmbeddingLike, k: int = 5) -> list[ChunkHit]:
        """Exact top-k chunks by cosine similarity, best first."""
        if isinstance(k, bool) or not isinstance(k, int) or not 0 < k <= MAX_K:
            raise InvalidInputError(f"k must be an integer in 1..{MAX_K}")
        vec = as_embedding(query, self.dim)
        with self._db.reading() as conn:
            index = self._index.partition("")
            if index is None:
                return []
            hits = index.search(vec, k)
            if not hits:
                return []
            rows = conn.execute(
                "SELECT c.chunk_id, c.doc_id, c.ordinal, c.text, d.source, d.title FROM chunks c "
                "JOIN documents d ON d.doc_id = c.doc_id "
                "WHERE c.chunk_id IN (SELECT value FROM json_each(?))",
                (json.dumps([h.id for h in hits]),),
            ).fetchall()
        by_id = {int(r[0]): r for r in rows}
        return [
            ChunkHit(h.id, r[1], r[2], r[3], r[4], r[5], h.score)
            for h in hits
            if (r := by_id.get(h.id)) is not None
        ]

    def index_size(self) -> int:
        index = self._index.partition("")
        return 0 if index is None else len(index)
