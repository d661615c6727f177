"""Semantic cache: answers reused for prompts whose embedding is close enough.

Theory of operation: an entry is (model, normalised prompt, answer, embedding, created, expires,
hits). `(model, normalised_prompt)` is unique; `put` replaces an entry for the same prompt. `lookup`
finds the nearest unexpired entry *of the same model* by cosine similarity (exact, via the
per-model in-memory `VectorIndex`) and returns it only if the similarity reaches the threshold,
counting the hit. Expired entries are never returned and are deleted by `purge`.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgebox.store import validation
from edgebox.store.db import Database
from edgebox.store.errors import InvalidInputError
from edgebox.store.index_set import IndexSet
from edgebox.store.vectors import EmbeddingLike, as_embedding, blob_to_embedding, embedding_to_blob

MAX_PROMPT_CHARS = 16_000
MAX_ANSWER_CHARS = 64_000
DEFAULT_THRESHOLD = 0.92
_SPACE = re.compile(r"\s+")


def normalise_prompt(prompt: str) -> str:
    """NFKC, case-folded, whitespace collapsed: the key the cache stores and matches exactly."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", prompt).casefold()).strip()


@dataclass(frozen=True, slots=True)
class CacheEntry:
    entry_id: int
    model: str
    normalised_prompt: str
    answer: str
    created_at: float
    expires_at: float
    hits: int


@dataclass(frozen=True, slots=True)
class CacheHit:
    entry: CacheEntry
    similarity: float


def _row(row: Any) -> CacheEntry:
    return CacheEntry(*row)


class SemanticCacheRepository:
    def __init__(self, db: Database, dim: int, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self.dim = dim
        self._clock = clock
        self._index = IndexSet(db, dim, self._load_rows)

    @staticmethod
    def _load_rows(conn: Any) -> Any:
        cur = conn.execute("SELECT model, entry_id, embedding, expires_at FROM semantic_cache ORDER BY model")
        return ((str(r[0]), int(r[1]), bytes(r[2]), float(r[3])) for r in cur)

    def put(
        self, model: str, normalised_prompt: str, answer: str, embedding: EmbeddingLike, *, ttl_s: float
    ) -> CacheEntry:
        validation.identifier(model, "model")
        validation.text(normalised_prompt, "normalised prompt", max_len=MAX_PROMPT_CHARS)
        validation.text(answer, "answer", max_len=MAX_ANSWER_CHARS, allow_empty=True)
        ttl = validation.timestamp(ttl_s, "ttl_s")
        if ttl <= 0:
            raise InvalidInputError("ttl_s must be positive")
        vec = as_embedding(embedding, self.dim)
        now = self._clock()
        with self._db.transaction() as tx:
            row = tx.execute(
                "INSERT INTO semantic_cache "
                "(model, normalised_prompt, answer, embedding, created_at, expires_at, hits) "
                "VALUES (?, ?, ?, ?, ?, ?, 0) "
                "ON CONFLICT (model, normalised_prompt) DO UPDATE SET answer = excluded.answer, "
                "embedding = excluded.embedding, created_at = excluded.created_at, "
                "expires_at = excluded.expires_at, hits = 0, last_hit_at = NULL "
                "RETURNING entry_id",
                (model, normalised_prompt, answer, embedding_to_blob(vec), now, now + ttl),
            ).fetchone()
            entry_id = int(row[0])
            tx.after_commit(lambda: self._index.add(model, entry_id, vec, now + ttl))
        return CacheEntry(entry_id, model, normalised_prompt, answer, now, now + ttl, 0)

    def lookup(
        self,
        embedding: EmbeddingLike,
        *,
        model: str,
        threshold: float = DEFAULT_THRESHOLD,
        count_hit: bool = True,
    ) -> CacheHit | None:
        """The nearest unexpired entry of `model` with cosine >= threshold. Its hit is counted in the
        same transaction, or with `count_hit=False` not at all (the caller counts it later with
        `count_hit()`, off the answer's critical path: a read needs no fsync, a write does)."""
        if not -1.0 <= threshold <= 1.0:
            raise InvalidInputError("threshold must be within [-1, 1]")
        vec = as_embedding(embedding, self.dim)
        with self._db.transaction() if count_hit else self._db.reading() as tx:
            now = self._clock()
            index = self._index.partition(model)
            if index is None:
                return None
            hits = index.search(vec, 1, now=now)
            if not hits or hits[0].score < threshold:
                return None
            best = hits[0]
            if count_hit:
                tx.execute(
                    (
                        "UPDATE semantic_cache SET hits = hits + 1, last_hit_at = ? WHERE "
                        "entry_id = ? AND expires_at > ?"
                    ),
                    (now, best.id, now),
                )
            row = tx.execute(
                (
                    "SELECT entry_id, model, normalised_prompt, answer, created_at, "
                    "expires_at, hits FROM semantic_cache WHERE entry_id = ? AND "
                    "expires_at > ?"
                ),
                (best.id, now),
            ).fetchone()
        return None if row is None else CacheHit(_row(row), best.score)

    def count_hit(self, entry_id: int) -> None:
        """Count one hit of an entry (see `lookup(count_hit=False)`)."""
        with self._db.transaction() as tx:
            now = self._clock()
            tx.execute(
                "UPDATE semantic_cache SET hits = hits + 1, last_hit_at = ? "
                "WHERE entry_id = ? AND expires_at > ?",
                (now, entry_id, now),
            )

    def get(self, entry_id: int) -> CacheEntry | None:
        row = self._db.query_one(
            (
                "SELECT entry_id, model, normalised_prompt, answer, created_at, "
                "expires_at, hits FROM semantic_cache WHERE entry_id = ?"
            ),
            (entry_id,),
        )
        return None if row is None else _row(row)

    def embedding(self, entry_id: int) -> EmbeddingLike | None:
        row = self._db.query_one("SELECT embedding FROM semantic_cache WHERE entry_id = ?", (entry_id,))
        return None if row is None else blob_to_embedding(bytes(row[0]), self.dim)

    def delete(self, entry_id: int) -> bool:
        with self._db.transaction() as tx:
            n = tx.execute("DELETE FROM semantic_cache WHERE entry_id = ?", (entry_id,)).rowcount
            tx.after_commit(lambda: self._index.remove([entry_id]))
        return bool(n)

    def count(self) -> int:
        row = self._db.query_one("SELECT count(*) FROM semantic_cache")
        return 0 if row is None else int(row[0])

    def purge(self, *, now: float | None = None) -> int:
        """Delete expired entries."""
        at = self._clock() if now is None else now
        with self._db.transaction() as tx:
            ids = [
                int(r[0])
                for r in tx.execute(
                    "DELETE FROM semantic_cache WHERE expires_at <= ? RETURNING entry_id", (at,)
                )
            ]
            tx.after_commit(lambda: self._index.remove(ids))
        return len(ids)
