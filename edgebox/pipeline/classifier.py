"""The prompt-injection classifier seam shared by the box and the gateway.

Theory of operation: a `Classifier` maps texts to scores in [0, 1] (1 = injection/jailbreak). Policy
(what score blocks, what score only flags) lives in `InjectionPolicy`, not in the classifier, so the
rule-based default and the trained model (edgebox.models) are interchangeable behind one interface.
Classifiers never log or echo the text they score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable


class Decision(StrEnum):
    allow = "allow"
    flag = "flag"
    block = "block"


@runtime_checkable
class Classifier(Protocol):
    """Scores texts; 1.0 means certainly an injection. Must be safe to call from any thread."""

    name: str

    def score(self, texts: Sequence[str]) -> list[float]: ...


@dataclass(frozen=True, slots=True)
class InjectionPolicy:
    flag_threshold: float = 0.5
    block_threshold: float = 0.8

    def __post_init__(self) -> None:
        if not 0.0 <= self.flag_threshold <= self.block_threshold <= 1.0:
            raise ValueError("thresholds must satisfy 0 <= flag <= block <= 1")

    def decide(self, score: float) -> Decision:
        if score >= self.block_threshold:
            return Decision.block
        if score >= self.flag_threshold:
            return Decision.flag
        return Decision.allow
