"""The semantic-cache threshold, chosen on data: with the built models (the same embedding the box
computes for every prompt), rephrasings of one question reach the threshold and different questions
(many differ in one word: Saturday/Sunday, France/Germany) do not. Prints the table in docs/box.md."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgebox.box.config import CacheSection
from edgebox.box.textmodels import TextModels

DATA = Path(__file__).parent / "data" / "cache_pairs.json"


def _similarities(models: TextModels, pairs: list[list[str]]) -> list[float]:
    a = models.embed_query([p[0] for p in pairs])
    b = models.embed_query([p[1] for p in pairs])
    return [float(x) for x in np.sum(a * b, axis=1)]


def test_default_threshold_separates_rephrasings_from_other_questions(text_models: TextModels) -> None:
    data = json.loads(DATA.read_text())
    same = _similarities(text_models, data["same_question"])
    other = _similarities(text_models, data["different_question"])
    print("\nthreshold  rephrasings reused  different questions reused")
    for t in (0.85, 0.88, 0.90, 0.92, 0.94, 0.96):
        hits, wrong = sum(s >= t for s in same), sum(s >= t for s in other)
        print(f"{t:.2f}       {hits:2}/{len(same)}               {wrong:2}/{len(other)}")
    threshold = CacheSection().threshold
    wrong = [p for p, s in zip(data["different_question"], other, strict=True) if s >= threshold]
    assert wrong == [], f"different questions would share a cached answer: {wrong}"
    # Case/spacing/punctuation-only rephrasings always hit; most small rewordings too.
    assert sum(s >= threshold for s in same) >= len(same) // 2
    assert min(same[0], same[3], same[10]) >= threshold
