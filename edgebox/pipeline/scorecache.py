"""A memo in front of any `Classifier`: texts seen recently are not scored again.

Theory of operation: requests repeat a lot of text (the same system prompt on every request, the
conversation history growing by one message per turn), and a trained classifier costs milliseconds per
text. `CachedClassifier` keeps the scores of the last `size` distinct texts, keyed by a BLAKE2b digest
under a random per-process key (so the memo holds no prompt text and its keys cannot be matched against
a dictionary), and sends only the misses to the wrapped classifier, in one batch. Thread-safe: the memo
is guarded by a lock, scoring happens outside it. Same protocol as the wrapped classifier.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence

from edgebox.pipeline.classifier import Classifier


class CachedClassifier:
    def __init__(self, inner: Classifier, size: int = 4096) -> None:
        self.inner = inner
        self.name = inner.name
        self._size = size
        self._memo: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()
        self._key = os.urandom(16)

    def _digest(self, text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), key=self._key, digest_size=16).digest()

    def score(self, texts: Sequence[str]) -> list[float]:
        digests = [self._digest(t) for t in texts]
        out: list[float | None] = []
        with self._lock:
            for d in digests:
                hit = self._memo.get(d)
                if hit is not None:
                    self._memo.move_to_end(d)
                out.append(hit)
        missing = [i for i, s in enumerate(out) if s is None]
        if missing:
            scores = self.inner.score([texts[i] for i in missing])
            with self._lock:
                for i, s in zip(missing, scores, strict=True):
                    out[i] = s
                    self._memo[digests[i]] = s
                while len(self._memo) > self._size:
                    self._memo.popitem(last=False)
        return [s if s is not None else 0.0 for s in out]
