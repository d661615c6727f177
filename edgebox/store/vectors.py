"""Exact cosine top-k over float32 embeddings, held in one numpy matrix.

Theory of operation
-------------------
Embeddings are stored in SQLite as little-endian float32 blobs (`dim * 4` bytes, as given: not
normalised). The `VectorIndex` keeps a copy of every row, L2-normalised, in a contiguous
`(capacity, dim)` float32 matrix plus a parallel id array and an optional per-row expiry time. A
query is normalised and scored with one matrix-vector product (numpy einsum, single-threaded), so
the score is exactly the cosine similarity; `argpartition` picks the k best in O(n) and only those
k are sorted (by score descending, then id ascending, so results are deterministic).

The matrix is loaded from the database once, on first use, with a single `SELECT id, embedding`
(see the repositories), and then kept in step with committed inserts and deletes: the repositories
register `add`/`remove` as after-commit callbacks of their transaction, so the index never holds a
row that was rolled back and never misses one that committed. Deletion swaps the last row into the
hole (O(dim)). Capacity doubles when full. If another process commits to the database, the index
notices through `Database.external_generation()` and reloads.

Memory: 4 * dim bytes per row (1.5 KiB for MiniLM's 384 dims, ~154 MB for 100k chunks).
Why not an extension: docs/store.md records the measurement against sqlite-vec.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgebox.store.errors import EmbeddingDimensionError, InvalidInputError

FloatArray = npt.NDArray[np.float32]
EmbeddingLike = Sequence[float] | npt.NDArray[np.floating]
EMBEDDING_DTYPE = np.dtype("<f4")


def as_embedding(vector: EmbeddingLike, dim: int) -> FloatArray:
    """Validate one embedding: shape (dim,), finite, non-zero. Returns float32."""
    try:
        arr = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInputError("embedding must be a sequence of numbers") from None
    if arr.ndim != 1 or arr.shape[0] != dim:
        raise EmbeddingDimensionError(f"embedding must have {dim} dimensions, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError("embedding contains NaN or infinity")
    norm = float(np.linalg.norm(arr))
    if norm == 0.0 or not math.isfinite(norm):
        raise InvalidInputError("embedding has zero (or overflowing) length; cosine is undefined")
    return arr


def embedding_to_blob(vector: FloatArray) -> bytes:
    return vector.astype(EMBEDDING_DTYPE, copy=False).tobytes()


def blob_to_embedding(blob: bytes, dim: int) -> FloatArray:
    if len(blob) != dim * 4:
        raise EmbeddingDimensionError(f"stored embedding has {len(blob) // 4} dimensions, expected {dim}")
    return np.frombuffer(blob, dtype=EMBEDDING_DTYPE).astype(np.float32)


@dataclass(frozen=True, slots=True)
class VectorHit:
    id: int
    score: float


class VectorIndex:
    """An in-memory exact cosine index: ids -> normalised float32 rows."""

    def __init__(self, dim: int, *, initial_capacity: int = 1024) -> None:
        if dim <= 0:
            raise InvalidInputError("embedding dimension must be positive")
        self.dim = dim
        self._matrix: FloatArray = np.zeros((max(initial_capacity, 1), dim), dtype=np.float32)
        self._ids: npt.NDArray[np.int64] = np.zeros(self._matrix.shape[0], dtype=np.int64)
        self._expires: npt.NDArray[np.float64] = np.full(self._matrix.shape[0], np.inf)
        self._row_of: dict[int, int] = {}
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._row_of

    def clear(self) -> None:
        self._row_of.clear()
        self._n = 0

    def _reserve(self, extra: int) -> None:
        need = self._n + extra
        cap = self._matrix.shape[0]
        if need <= cap:
            return
        new_cap = max(need, cap * 2)
        matrix = np.zeros((new_cap, self.dim), dtype=np.float32)
        matrix[: self._n] = self._matrix[: self._n]
        ids = np.zeros(new_cap, dtype=np.int64)
        ids[: self._n] = self._ids[: self._n]
        expires = np.full(new_cap, np.inf)
        expires[: self._n] = self._expires[: self._n]
        self._matrix, self._ids, self._expires = matrix, ids, expires

    def add_many(
        self,
        ids: Sequence[int],
        vectors: FloatArray,
        expires_at: Sequence[float] | None = None,
    ) -> None:
        """Add (or replace) rows. `vectors` is (len(ids), dim); rows are normalised here."""
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or vectors.shape[0] != len(ids):
            raise EmbeddingDimensionError(f"expected a ({len(ids)}, {self.dim}) matrix, got {vectors.shape}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if np.any(norms == 0):
            raise InvalidInputError("embedding has zero length; cosine is undefined")
        normalised = (vectors / norms).astype(np.float32, copy=False)
        self.remove_many(i for i in ids if i in self._row_of)
        self._reserve(len(ids))
        start = self._n
        end = start + len(ids)
        self._matrix[start:end] = normalised
        self._ids[start:end] = np.asarray(ids, dtype=np.int64)
        self._expires[start:end] = np.inf if expires_at is None else np.asarray(expires_at, dtype=np.float64)
        for offset, item_id in enumerate(ids):
            self._row_of[int(item_id)] = start + offset
        self._n = end

    def add(self, item_id: int, vector: FloatArray, expires_at: float | None = None) -> None:
        self.add_many([item_id], vector.reshape(1, -1), None if expires_at is None else [expires_at])

    def remove_many(self, ids: Iterable[int]) -> None:
        for item_id in list(ids):
            row = self._row_of.pop(int(item_id), None)
            if row is None:
                continue
            last = self._n - 1
            if row != last:
                self._matrix[row] = self._matrix[last]
                self._ids[row] = self._ids[last]
                self._expires[row] = self._expires[last]
                self._row_of[int(self._ids[row])] = row
            self._n = last

    def search(self, query: FloatArray, k: int, *, now: float | None = None) -> list[VectorHit]:
        """Exact top-k by cosine similarity. Rows with expires_at <= now are skipped."""
        if k <= 0 or self._n == 0:
            return []
        if query.shape != (self.dim,):
            raise EmbeddingDimensionError(f"query must have {self.dim} dimensions, got shape {query.shape}")
        qn = float(np.linalg.norm(query))
        if qn == 0.0 or not math.isfinite(qn):
            raise InvalidInputError("query embedding has zero length; cosine is undefined")
        q = (query / qn).astype(np.float32, copy=False)
        # einsum (optimize=False) is numpy's own SIMD loop on this thread. BLAS sgemv was as fast
        # when the machine was idle but, under load, its worker-thread hand-off cost up to 8 ms per
        # query even for 10k rows (measured; see docs/store.md). The scan is memory-bound anyway.
        scores = np.einsum("ij,j->i", self._matrix[: self._n], q, optimize=False)
        if now is not None:
            expired = self._expires[: self._n] <= now
            if np.any(expired):
                scores = np.where(expired, -np.inf, scores).astype(np.float32)
        candidates = int(np.count_nonzero(np.isfinite(scores))) if now is not None else self._n
        k = min(k, candidates)
        if k == 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k] if k < self._n else np.arange(self._n)
        ids = self._ids[top]
        order = np.lexsort((ids, -scores[top]))
        return [VectorHit(int(ids[i]), float(scores[top][i])) for i in order]
