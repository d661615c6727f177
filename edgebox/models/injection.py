"""The trained prompt-injection classifier (implements edgebox.pipeline.classifier.Classifier).

Theory of operation: features = [MiniLM embedding | hashed char 3..5-grams | rule signals]
(edgebox.models.features), scored by a linear head (logistic regression, trained by `edgebox
models train`, committed in edgebox/models/params, copied into the models dir by the build and
verified against the manifest): score = sigmoid(x.w + b), computed in numpy (exact, and the same
whichever runtime embeds). The final score is `max(head probability, decisive rule score)`: rules
for encodings (base64/hex/binary/rot13 payloads that decode to instructions, invisible characters or
homoglyphs hiding an override) can raise a score on their own, never lower it.

Long inputs are scanned in full: a text is cut into windows of at most WINDOW_TOKENS tokens that
overlap by WINDOW_OVERLAP tokens (cut on token boundaries, so no word is split), every window is
scored, and the text's score is the highest window score. Short texts are one window. The cost is
linear in the length (about one embedding per 96 tokens). When the caller already has the
embedding of a short text (the semantic cache computes it anyway), `score_embedded` skips the
transformer. Thread-safe for concurrent `score` calls. Never logs text.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer

from edgebox.models.backends import FloatArray
from edgebox.models.config import ModelsConfig
from edgebox.models.embedder import Embedder
from edgebox.models.errors import ManifestInvalidError
from edgebox.models.features import FEATURE_VERSION, NGRAM_DIM, SIGNAL_DIM, decisive_rule_score, text_features
from edgebox.models.manifest import Manifest
from edgebox.models.trained import HEAD_FILE, npy_load

CLASSIFIER_MAX_TOKENS = 128
WINDOW_TOKENS = 128
WINDOW_OVERLAP = 32


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


def window_spans(
    offsets: Sequence[tuple[int, int]], length: int, size: int, overlap: int
) -> list[tuple[int, int]]:
    """Character spans covering the whole text, each at most `size` tokens (special tokens excluded).

    `offsets` are the (start, end) character offsets of the text's tokens in order; consecutive
    windows share `overlap` tokens. A text of at most `size` tokens is one span (0, length)."""
    spans = [o for o in offsets if o[1] > o[0]]
    if len(spans) <= size:
        return [(0, length)]
    step = size - overlap
    out: list[tuple[int, int]] = []
    for first in range(0, len(spans), step):
        last = min(first + size, len(spans)) - 1
        start = 0 if first == 0 else spans[first][0]
        end = length if last == len(spans) - 1 else spans[last + 1][0]
        out.append((start, end))
        if last == len(spans) - 1:
            break
    return out


def splitter(manifest: Manifest) -> Tokenizer:
    """The model's tokenizer without truncation, for cutting windows."""
    tokenizer = Tokenizer.from_str(manifest.read_verified("tokenizer.json").decode("utf-8"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def split_windows(tokenizer: Tokenizer, text: str, max_tokens: int = CLASSIFIER_MAX_TOKENS) -> list[str]:
    """`text` as overlapping windows that each fit `max_tokens` with [CLS] and [SEP] (one if short)."""
    offsets = tokenizer.encode(text, add_special_tokens=False).offsets
    size = min(WINDOW_TOKENS, max_tokens - 2)
    return [text[a:b] for a, b in window_spans(offsets, len(text), size, WINDOW_OVERLAP)]


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
        head = npy_load(self.manifest.read_verified(HEAD_FILE)).astype(np.float64)
        if head.ndim != 1 or len(head) != self.embedder.dim + NGRAM_DIM + SIGNAL_DIM + 1:
            raise ManifestInvalidError("classifier head does not fit the features: rebuild the models")
        self._w = head[:-1]
        self._b = float(head[-1])
        dim = self.embedder.dim
        self._w_emb = self._w[:dim]
        self._w_ngram = self._w[dim : dim + NGRAM_DIM]
        self._w_sig = self._w[dim + NGRAM_DIM :]
        self._splitter = splitter(self.manifest)
        self._lock = threading.Lock()

    def windows(self, text: str) -> list[str]:
        """The text cut into overlapping windows of at most WINDOW_TOKENS tokens (one if short)."""
        with self._lock:
            return split_windows(self._splitter, text, self.max_tokens)

    def embed(self, texts: Sequence[str]) -> FloatArray:
        return self.embedder.embed(texts, max_tokens=self.max_tokens)

    def _head(self, texts: Sequence[str], embeddings: FloatArray) -> FloatArray:
        """sigmoid(x.w + b) per row, the same sum as `feature_rows(...) @ w` computed part by part:
        the hashed n-gram vector is mostly zeros, so only its non-zero entries are multiplied (a
        dense row is NGRAM_DIM floats; this is the classifier's largest cost after the encoder)."""
        emb = np.asarray(embeddings, dtype=np.float32).astype(np.float64)
        logits = emb @ self._w_emb + self._b
        rule = np.zeros(len(texts), dtype=np.float32)
        for i, text in enumerate(texts):
            ngrams, sig, _ = text_features(text)
            nz = np.flatnonzero(ngrams)
            logits[i] += ngrams[nz].astype(np.float64) @ self._w_ngram[nz]
            logits[i] += sig.astype(np.float64) @ self._w_sig
            rule[i] = decisive_rule_score(sig)
        head = 1.0 / (1.0 + np.exp(-logits))
        return np.asarray(np.clip(np.maximum(head, rule), 0.0, 1.0), dtype=np.float32)

    def score_embedded(self, texts: Sequence[str], embeddings: FloatArray) -> list[float]:
        """Score with embeddings the caller already computed (rows aligned with `texts`).

        A text longer than one window is still scanned in full: its other windows are embedded here."""
        if len(texts) != len(embeddings):
            raise ValueError("texts and embeddings differ in length")
        if not texts:
            return []
        scores: list[float] = []
        for text, embedding in zip(texts, embeddings, strict=True):
            parts = self.windows(text)
            if len(parts) == 1:
                scores.append(float(self._head([text], np.asarray(embedding)[None, :])[0]))
            else:
                scores.append(float(self._head(parts, self.embed(parts)).max()))
        return scores

    def score(self, texts: Sequence[str]) -> list[float]:
        if isinstance(texts, str):
            raise TypeError("score() takes a sequence of strings, not one string")
        if not texts:
            return []
        windows = [self.windows(t) for t in texts]
        flat = [w for ws in windows for w in ws]
        per_window = self._head(flat, self.embed(flat))
        scores: list[float] = []
        start = 0
        for ws in windows:
            scores.append(float(per_window[start : start + len(ws)].max()))
            start += len(ws)
        return scores

    def is_injection(self, score: float) -> bool:
        return score >= self.threshold
