"""The local models as the box pipeline uses them: one transformer pass per prompt.

Theory of operation: the trained injection classifier (`edgebox.models.injection`, the same model
and options the gateway uses) already embeds each text with MiniLM before its linear head, and the
semantic cache and the document search need exactly that embedding. `TextModels.analyse(texts)`
therefore embeds once and scores with `score_embedded`, returning both. Documents are embedded with
the embedder's full token budget (`embed_passages`). With `classifier = "rules"` the regex classifier
scores and the embedder still serves the cache and documents.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgebox.errors import ConfigError, EdgeboxError
from edgebox.pipeline.classifier import Classifier
from edgebox.pipeline.rules import RuleClassifier

FloatArray = Any
MEMO_SIZE = 2048


class TextModels:
    def __init__(self, classifier: Classifier, embedder: Any) -> None:
        self.classifier = classifier
        self.embedder = embedder
        self.dim = int(embedder.dim)
        self._memo: OrderedDict[bytes, tuple[float, FloatArray]] = OrderedDict()
        self._lock = threading.Lock()
        self._key = os.urandom(16)

    @classmethod
    def load(cls, classifier: str) -> TextModels:
        from edgebox.models.config import ModelsConfig
        from edgebox.models.embedder import Embedder

        try:
            config = ModelsConfig.from_env()
            if classifier == "model":
                from edgebox.models.injection import InjectionClassifier

                model = InjectionClassifier(config)
                return cls(model, model.embedder)
            return cls(RuleClassifier(), Embedder(config))
        except EdgeboxError as exc:
            raise ConfigError(
                f"the local models are not usable [{exc.code}]: run `make models` (or `edgebox models build`)"
            ) from None

    def analyse(self, texts: Sequence[str]) -> tuple[list[float], FloatArray]:
        """(injection score per text, embedding matrix) with one embedding pass; texts seen recently
        (a repeated question, the same system prompt) come from a memo keyed by a keyed BLAKE2b digest
        (no text is kept), so a cache hit for a repeated question costs no model run."""
        keys = [self._digest(t) for t in texts]
        with self._lock:
            hits = [self._memo.get(k) for k in keys]
            for k, h in zip(keys, hits, strict=True):
                if h is not None:
                    self._memo.move_to_end(k)
        missing = [i for i, h in enumerate(hits) if h is None]
        if missing:
            scores, vectors = self._analyse([texts[i] for i in missing])
            with self._lock:
                for j, i in enumerate(missing):
                    hits[i] = (scores[j], np.asarray(vectors[j], dtype=np.float32))
                    self._memo[keys[i]] = hits[i]  # type: ignore[assignment]
                while len(self._memo) > MEMO_SIZE:
                    self._memo.popitem(last=False)
        done = [h for h in hits if h is not None]
        return [h[0] for h in done], np.stack([h[1] for h in done])

    def _digest(self, text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), key=self._key, digest_size=16).digest()

    def _analyse(self, texts: Sequence[str]) -> tuple[list[float], FloatArray]:
        clf = self.classifier
        embed = getattr(clf, "embed", None)
        if embed is not None and hasattr(clf, "score_embedded"):
            vectors = embed(texts)
            return list(clf.score_embedded(texts, vectors)), vectors
        return list(clf.score(texts)), self.embed_query(texts)

    def embed_query(self, texts: Sequence[str]) -> FloatArray:
        return np.asarray(self.embedder.embed(list(texts), max_tokens=128), dtype=np.float32)

    def embed_passages(self, texts: Sequence[str]) -> FloatArray:
        return np.asarray(self.embedder.embed(list(texts)), dtype=np.float32)
