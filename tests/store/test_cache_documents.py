from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgebox.store import DatabaseKey, Store
from edgebox.store.documents import ChunkInput
from edgebox.store.errors import AlreadyExistsError, EmbeddingDimensionError, InvalidInputError
from edgebox.store.semantic_cache import normalise_prompt

from .conftest import DIM, FakeClock, vec


def test_normalise_prompt() -> None:
    assert normalise_prompt("  What IS\tthe\n\nRate? ") == "what is the rate?"
    assert normalise_prompt("\uff21\uff22\uff23") == "abc"  # NFKC folds full-width letters


def test_cache_lookup_threshold_model_and_hits(store: Store, clock: FakeClock) -> None:
    a = vec(1)
    e = store.cache.put("minilm", "what is the rate", "3.5%", a, ttl_s=3600)
    near = a + 0.01 * vec(2)
    hit = store.cache.lookup(near, model="minilm", threshold=0.95)
    assert hit is not None and hit.entry.entry_id == e.entry_id and hit.entry.hits == 1
    assert hit.similarity > 0.99
    assert store.cache.lookup(near, model="other-model") is None
    assert store.cache.lookup(vec(3), model="minilm", threshold=0.95) is None  # unrelated vector
    assert store.cache.lookup(a, model="minilm").entry.hits == 2  # type: ignore[union-attr]


def test_cache_picks_nearest_and_respects_ttl(store: Store, clock: FakeClock) -> None:
    base = vec(10)
    store.cache.put("m", "p1", "far", base + 0.3 * vec(11), ttl_s=100)
    store.cache.put("m", "p2", "near", base + 0.01 * vec(12), ttl_s=10)
    assert store.cache.lookup(base, model="m", threshold=0.5).entry.answer == "near"  # type: ignore[union-attr]
    clock.advance(10)  # "near" expired: the other one is returned, never the expired one
    assert store.cache.lookup(base, model="m", threshold=0.5).entry.answer == "far"  # type: ignore[union-attr]
    assert store.purge().cache_deleted == 1
    assert store.cache.count() == 1


def test_cache_put_replaces_same_prompt(store: Store) -> None:
    first = store.cache.put("m", "p", "old", vec(1), ttl_s=10)
    store.cache.lookup(vec(1), model="m")
    second = store.cache.put("m", "p", "new", vec(2), ttl_s=10)
    assert second.entry_id == first.entry_id and store.cache.count() == 1
    hit = store.cache.lookup(vec(2), model="m", threshold=0.99)
    assert hit is not None and hit.entry.answer == "new" and hit.entry.hits == 1
    assert store.cache.lookup(vec(1), model="m", threshold=0.99) is None  # old embedding gone from the index
    assert store.cache.delete(first.entry_id)
    assert store.cache.lookup(vec(2), model="m") is None


@pytest.mark.parametrize("bad", [np.zeros(DIM), np.ones(DIM + 1), [float("nan")] * DIM])
def test_cache_rejects_bad_embeddings(store: Store, bad: object) -> None:
    with pytest.raises(InvalidInputError):
        store.cache.put("m", "p", "a", bad, ttl_s=10)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        store.cache.lookup(bad, model="m")  # type: ignore[arg-type]


def _chunks(seed: int, n: int) -> list[ChunkInput]:
    return [ChunkInput(f"doc{seed} chunk {i}", vec(seed * 1000 + i)) for i in range(n)]


def brute_force(store: Store, q: np.ndarray, k: int) -> list[int]:
    rows = store.db.query_all("SELECT chunk_id, embedding FROM chunks")
    ids = [int(r[0]) for r in rows]
    m = np.stack([np.frombuffer(r[1], dtype="<f4") for r in rows])
    scores = (m / np.linalg.norm(m, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    return [ids[i] for i in sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))[:k]]


def test_documents_search_is_exact_and_follows_inserts_and_deletes(store: Store) -> None:
    docs = [store.documents.add_document(f"file:///d{s}", f"Doc {s}", _chunks(s, 20)) for s in range(5)]
    q = vec(424242)
    hits = store.documents.search(q, 7)
    assert [h.chunk_id for h in hits] == brute_force(store, q, 7)
    assert hits[0].source.startswith("file:///d") and hits[0].text.startswith("doc")
    # delete a document: its chunks vanish from results
    assert store.documents.delete_document(docs[2].doc_id)
    assert store.documents.chunk_count() == 80
    assert store.documents.index_size() == 80
    assert [h.chunk_id for h in store.documents.search(q, 10)] == brute_force(store, q, 10)
    # replace a document: old chunks out, new ones in, in one transaction
    with pytest.raises(AlreadyExistsError):
        store.documents.add_document("file:///d1", "again", _chunks(9, 3))
    new = store.documents.add_document("file:///d1", "Doc 1 v2", _chunks(9, 3), replace=True)
    assert store.documents.find_by_source("file:///d1") == new and new.chunk_count == 3
    assert store.documents.index_size() == store.documents.chunk_count() == 63
    assert [h.chunk_id for h in store.documents.search(q, 63)] == brute_force(store, q, 63)
    target = _chunks(9, 3)[1]
    assert store.documents.search(target.embedding, 1)[0].text == target.text


def test_failed_insert_does_not_reach_the_index(store: Store) -> None:
    store.documents.add_document("a", "A", _chunks(1, 3))
    assert store.documents.index_size() == 3  # index loaded
    bad = [*_chunks(2, 2), ChunkInput("bad\x00text", vec(5))]
    with pytest.raises(InvalidInputError):
        store.documents.add_document("b", "B", bad)
    with pytest.raises(EmbeddingDimensionError):
        store.documents.add_document("b", "B", [ChunkInput("x", np.ones(DIM + 1))])
    assert store.documents.index_size() == store.documents.chunk_count() == 3
    with pytest.raises(InvalidInputError):
        store.documents.add_document("c", "C", [])
    with pytest.raises(InvalidInputError):
        store.documents.search(vec(1), 0)


def test_index_reloads_after_another_connection_writes(
    db_path: Path, key: DatabaseKey, store: Store, clock: FakeClock
) -> None:
    store.documents.add_document("a", "A", _chunks(1, 5))
    assert store.documents.index_size() == 5
    with Store.open(db_path, key, clock=clock) as other:
        other.documents.add_document("b", "B", _chunks(2, 5))
        other.cache.put("m", "p", "answer", vec(77), ttl_s=100)
    assert store.documents.index_size() == 10
    q = _chunks(2, 5)[3].embedding
    assert store.documents.search(q, 1)[0].text == "doc2 chunk 3"
    assert store.cache.lookup(vec(77), model="m") is not None


def test_reopen_loads_index_from_disk(db_path: Path, key: DatabaseKey, store: Store) -> None:
    store.documents.add_document("a", "A", _chunks(1, 30))
    q = vec(5)
    before = [h.chunk_id for h in store.documents.search(q, 5)]
    store.close()
    with Store.open(db_path, key) as again:
        assert [h.chunk_id for h in again.documents.search(q, 5)] == before
