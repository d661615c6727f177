"""The rule-based default prompt-injection `Classifier`.

Theory of operation: a small set of weighted regular expressions for the common injection and
jailbreak phrasings ("ignore all previous instructions", "you are now DAN", "reveal your system
prompt", fake role/tool markers, ...). Each text's score combines the weights of the rules it matches
as independent evidence: 1 - prod(1 - w). Texts are normalised (case, whitespace, zero-width
characters) before matching so trivial obfuscation does not bypass the rules. Scores of recently seen
texts are memoised (an LRU keyed by the text itself, in memory only), which keeps the hot path cheap
when a box retries or repeats a prompt. The trained model (edgebox.models) replaces this class behind
the same `Classifier` protocol; the block/flag thresholds live in `InjectionPolicy`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

# (weight, pattern) — patterns run on lowercased, whitespace-collapsed text.
RULES: tuple[tuple[float, str], ...] = (
    (
        0.9,
        r"\b(ignore|disregard|forget|override|bypass)\b.{0,40}\b(previous|prior|above|earlier|all|any|your|the)"
        r"\b.{0,40}\b(instructions?|prompts?|rules|directions|guidelines|context|messages?)\b",
    ),
    (
        0.6,
        r"\b(reveal|print|show|repeat|leak|output|tell me)\b.{0,40}\b(system|hidden|initial|secret)\b.{0,20}"
        r"\b(prompt|instructions?|message|rules)\b",
    ),
    (
        0.6,
        r"\byou are (now|no longer)\b|\bfrom now on,? you\b"
        r"|\bact as (an? )?(unfiltered|unrestricted|jailbroken)",
    ),
    (0.7, r"\b(dan|developer mode|jailbreak|jailbroken|do anything now)\b"),
    (0.5, r"\b(no|without) (restrictions|filters|limitations|rules|guardrails)\b"),
    (0.7, r"<\|(im_start|im_end|system|endoftext|start_header_id)\|>|\[/?inst\]|<</?sys>>"),
    (0.3, r"^\s*(system|assistant)\s*:"),
    (0.4, r"\bnew instructions?\b|\bupdated instructions?\b|\boverride (mode|protocol)\b"),
    (
        0.4,
        r"\b(api[_ -]?key|password|credentials?|secret key)\b.{0,30}"
        r"\b(send|give|print|reveal|post|exfiltrate)\b",
    ),
)

_COMPILED = tuple((w, re.compile(p, re.MULTILINE | re.DOTALL)) for w, p in RULES)
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_SPACES = re.compile(r"\s+")


def _normalise(text: str) -> str:
    # The whole text, however long: every pattern is a bounded-gap search, linear in the length, so
    # the schema's size limits (96,000 characters per request) keep a full scan cheap.
    return _SPACES.sub(" ", text.translate(_ZERO_WIDTH).lower())


@lru_cache(maxsize=2048)
def _score_one(text: str) -> float:
    norm = _normalise(text)
    keep = 1.0
    for weight, pattern in _COMPILED:
        if pattern.search(norm):
            keep *= 1.0 - weight
    return round(1.0 - keep, 4)


class RuleClassifier:
    """Regex rules; deterministic, thread-safe, no model files."""

    name = "rules-v1"

    def score(self, texts: Sequence[str]) -> list[float]:
        return [_score_one(t) for t in texts]
