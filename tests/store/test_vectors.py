from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebox.store.errors import EmbeddingDimensionError, InvalidInputError
from edgebox.store.vectors import VectorIndex, as_embedding


def brute_force(ids: list[int], matrix: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    norm = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    scores = norm @ (q / np.linalg.norm(q))
    order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))
    return [ids[i] for i in order[:k]]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300),
    dim=st.integers(1, 24),
    k=st.integers(1, 20),
    seed=st.integers(0, 2**32 - 1),
    removals=st.integers(0, 50),
)
def test_top_k_matches_brute_force_after_adds_and_removes(
    n: int, dim: int, k: int, seed: int, removals: int
) -> None:
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((n, dim)).astype(np.float32)
    matrix[np.linalg.norm(matrix, axis=1) == 0] = 1.0
    ids = [int(i) for i in rng.choice(10_000, size=n, replace=False)]
    index = VectorIndex(dim, initial_capacity=4)  # forces growth
    for start in range(0, n, 37):
        index.add_many(ids[start : start + 37], matrix[start : start + 37])
    gone = set(ids[: min(removals, n - 1)])
    index.remove_many(gone)
    keep = [i for i, item in enumerate(ids) if item not in gone]
    q = rng.standard_normal(dim).astype(np.float32)
    if np.linalg.norm(q) == 0:
        q[0] = 1.0
    hits = index.search(q, k)
    expected = brute_force([ids[i] for i in keep], matrix[keep], q, k)
    # float32 ties aside, the ids must agree; compare scores to be robust to exact-tie ordering
    assert len(hits) == len(expected)
    exact = {
        ids[i]: float(s)
        for i, s in zip(
            keep,
            (matrix[keep] / np.linalg.norm(matrix[keep], axis=1, keepdims=True)) @ (q / np.linalg.norm(q)),
            strict=True,
        )
    }
    assert np.allclose([h.score for h in hits], [exact[e] for e in expected], atol=1e-5)
    assert all(h.score >= hits[i + 1].score for i, h in enumerate(hits[:-1]))
    assert len(index) == len(keep)


def test_replace_and_expiry() -> None:
    index = VectorIndex(3)
    index.add(1, np.array([1, 0, 0], dtype=np.float32))
    index.add(2, np.array([0, 1, 0], dtype=np.float32), expires_at=100.0)
    q = np.array([0, 1, 0.1], dtype=np.float32)
    assert [h.id for h in index.search(q, 1)] == [2]
    assert [h.id for h in index.search(q, 1, now=100.0)] == [1]  # 2 expired
    assert [h.id for h in index.search(q, 5, now=100.0)] == [1]
    index.add(1, np.array([0, 1, 0.1], dtype=np.float32))  # replace row 1
    assert len(index) == 2
    top = index.search(q, 1)[0]
    assert top.id == 1 and top.score == pytest.approx(1.0, abs=1e-6)


def test_cosine_is_scale_invariant() -> None:
    index = VectorIndex(2)
    index.add(1, np.array([100.0, 0.0], dtype=np.float32))
    index.add(2, np.array([0.6, 0.8], dtype=np.float32))
    hits = index.search(np.array([0.001, 0.0], dtype=np.float32), 2)
    assert [h.id for h in hits] == [1, 2]
    assert hits[1].score == pytest.approx(0.6, abs=1e-6)


@pytest.mark.parametrize(
    "bad", [[0.0, 0.0, 0.0], [1.0, float("nan"), 0.0], [1.0, float("inf"), 0.0], [1.0, 2.0], "abc"]
)
def test_bad_embeddings_are_typed_errors(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        as_embedding(bad, 3)  # type: ignore[arg-type]


def test_dimension_mismatch_is_its_own_error() -> None:
    with pytest.raises(EmbeddingDimensionError):
        as_embedding([1.0, 2.0], 3)
    with pytest.raises(EmbeddingDimensionError):
        VectorIndex(3).add_many([1], np.ones((1, 4), dtype=np.float32))
