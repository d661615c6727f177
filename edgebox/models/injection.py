"""The trained prompt-injection classifier (implements edgebox.pipeline.classifier.Classifier).

Theory of operation: features = [MiniLM embedding | hashed char 3..5-grams | rule signals]
(edgebox.models.features), scored by a linear head trained at build time (logistic regression) and
shipped as ONNX and LiteRT; the runtime in `ModelsConfig` picks which. The final score is
`max(head probability, decisive rule score)`: rules for encodings (base64/hex/binary/rot13 payloads
that decode to instructions, invisible characters or homoglyphs hiding an override) can raise a
score on their own, never lower it. When the caller already has the embedding (the semantic cache
computes it anyway), `score_embedded` skips the transformer: the head then costs well under 2 ms.
Thread-safe for concurrent `score` calls (runtimes are called under a lock). Never logs text.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from edgebox.models.backends import FloatArray, HeadBackend, LiteRTHeadBackend, OnnxHeadBackend
from edgebox.models.config import ModelsConfig
from edgebox.models.embedder import Embedder
from edgebox.models.errors import ManifestInvalidError
from edgebox.models.features import FEATURE_VERSION, NGRAM_DIM, SIGNAL_DIM, decisive_rule_score, text_features
from edgebox.models.manifest import Manifest

HEAD_FILES = {"onnx": "injection-head.onnx", "litert": "injection-head.tflite"}
CLASSIFIER_MAX_TOKENS = 128


def feature_rows(texts: Sequence[str], embeddings: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(feature matrix for the head, rule score per row)."""
    rows = np.empty((len(texts), embeddings.shape[1] + NGRAM_DIM + SIGNAL_DIM), dtype=np.float32)
    rule = np.zeros(len(texts), dtype=np.float32)
    dim = embeddings.shape[1]
    for i, text in enumerate(texts):
        ngrams, sig, _ = text_features(text)
        rows[i, :dim] = embeddings[i]
        rows[i, dim : dim + NGRAM_DIM] = ngrams
        rows[i, dim + NGRAM_DIM :] = sig
        rule[i] = decisive_rule_score(sig)
    return rows, rule


class InjectionClassifier:
    """Scores texts in [0, 1]; `injection` when score >= config.threshold."""

    name = "minilm-ngram-linear"

    def __init__(
        self,
        config: ModelsConfig | None = None,
        *,
        manifest: Manifest | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.config = config or ModelsConfig.from_env()
        self.manifest = manifest or Manifest.load(self.config.models_dir)
        section = self.manifest.section("classifier")
        if section.get("feature_version") != FEATURE_VERSION or section.get("ngram_dim") != NGRAM_DIM:
            raise ManifestInvalidError("classifier was built with other features: rebuild the models")
        self.threshold = self.config.threshold
        self.max_tokens = int(section.get("max_tokens", CLASSIFIER_MAX_TOKENS))
        self.embedder = embedder or Embedder(self.config, manifest=self.manifest)
        model = self.manifest.read_verified(HEAD_FILES[self.config.runtime])
        self._head: HeadBackend = (
            LiteRTHeadBackend(model, threads=1) if self.config.runtime == "litert" else OnnxHeadBackend(model)
        )
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> FloatArray:
        with self._lock:
            return self.embedder.embed(texts, max_tokens=self.max_tokens)

    def score_embedded(self, texts: Sequence[str], embeddings: FloatArray) -> list[float]:
        """Score with embeddings the caller already computed (rows aligned with `texts`)."""
        if len(texts) != len(embeddings):
            raise ValueError("texts and embeddings differ in length")
        if not texts:
            return []
        rows, rule = feature_rows(texts, np.asarray(embeddings, dtype=np.float32))
        with self._lock:
            head = self._head.run(rows)
        return [float(s) for s in np.clip(np.maximum(head, rule), 0.0, 1.0)]

    def score(self, texts: Sequence[str]) -> list[float]:
        if isinstance(texts, str):
            raise TypeError("score() takes a sequence of strings, not one string")
        return self.score_embedded(texts, self.embed(texts))

    def is_injection(self, score: float) -> bool:
        return score >= self.threshold
