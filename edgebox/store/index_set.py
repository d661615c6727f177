"""Lazily loaded, partitioned vector indexes that follow one SQL table.

Theory of operation: an `IndexSet` owns one `VectorIndex` per partition (the semantic cache
partitions by model; chunks use a single partition). It is built on first use from a loader that
reads every `(partition, id, embedding blob, expires_at)` row in one query, and afterwards kept
current by the repositories' after-commit callbacks (`add` / `remove` are no-ops while not loaded,
since the next load will read the rows anyway). All methods must be called with the database lock
held; `Database.transaction()` / `reading()` take it. When another connection has committed
(`Database.external_generation()` moved), the set is dropped and reloaded on next use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from edgebox.log import get_logger
from edgebox.store.db import Database
from edgebox.store.vectors import EMBEDDING_DTYPE, FloatArray, VectorIndex

# (partition, id, embedding blob, expires_at or None)
LoaderRow = tuple[str, int, bytes, float | None]
Loader = Callable[[Any], Iterable[LoaderRow]]

_LOAD_BATCH = 8192
log = get_logger(__name__)


class IndexSet:
    def __init__(self, db: Database, dim: int, loader: Loader) -> None:
        self._db = db
        self.dim = dim
        self._loader = loader
        self._indexes: dict[str, VectorIndex] | None = None
        self._generation = -1

    @property
    def loaded(self) -> bool:
        return self._indexes is not None

    def invalidate(self) -> None:
        self._indexes = None

    def indexes(self) -> dict[str, VectorIndex]:
        with self._db.lock:
            generation = self._db.external_generation()
            if self._indexes is None or generation != self._generation:
                self._indexes = self._load()
                self._generation = generation
            return self._indexes

    def partition(self, name: str) -> VectorIndex | None:
        return self.indexes().get(name)

    def _load(self) -> dict[str, VectorIndex]:
        indexes: dict[str, VectorIndex] = {}
        with self._db.reading() as conn:
            for part, ids, matrix, expires in _batches(self._loader(conn), self.dim):
                index = indexes.get(part)
                if index is None:
                    index = indexes[part] = VectorIndex(self.dim)
                index.add_many(ids, matrix, expires)
        return indexes

    def add(self, partition: str, item_id: int, vector: FloatArray, expires_at: float | None = None) -> None:
        self.add_many(
            partition, [item_id], vector.reshape(1, -1), None if expires_at is None else [expires_at]
        )

    def add_many(
        self, partition: str, ids: list[int], vectors: FloatArray, expires_at: list[float] | None = None
    ) -> None:
        if self._indexes is None or not ids:
            return
        try:
            index = self._indexes.get(partition)
            if index is None:
                index = self._indexes[partition] = VectorIndex(self.dim)
            index.add_many(ids, vectors, expires_at)
        except Exception:  # the rows are committed: never let the index diverge, rebuild it instead
            log.exception("store_index_update_failed")
            self._indexes = None

    def remove(self, ids: Iterable[int]) -> None:
        if self._indexes is None:
            return
        wanted = list(ids)
        try:
            for index in self._indexes.values():
                index.remove_many(wanted)
        except Exception:
            log.exception("store_index_update_failed")
            self._indexes = None


def _batches(
    rows: Iterable[LoaderRow], dim: int
) -> Iterator[tuple[str, list[int], FloatArray, list[float] | None]]:
    """Group consecutive rows of one partition into matrices of up to _LOAD_BATCH rows."""
    part: str | None = None
    ids: list[int] = []
    blobs: list[bytes] = []
    expires: list[float] = []

    def flush() -> tuple[str, list[int], FloatArray, list[float] | None]:
        matrix = (
            np.frombuffer(b"".join(blobs), dtype=EMBEDDING_DTYPE).reshape(len(ids), dim).astype(np.float32)
        )
        exp = None if all(e == np.inf for e in expires) else list(expires)
        return (part or "", list(ids), matrix, exp)

    for p, item_id, blob, exp_at in rows:
        if (p != part or len(ids) >= _LOAD_BATCH) and ids:
            yield flush()
            ids.clear()
            blobs.clear()
            expires.clear()
        part = p
        if len(blob) != dim * 4:
            continue  # a row written with another dimension is never searchable; validated on insert
        ids.append(int(item_id))
        blobs.append(bytes(blob))
        expires.append(np.inf if exp_at is None else float(exp_at))
    if ids:
        yield flush()
