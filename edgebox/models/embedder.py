"""Sentence embeddings (all-MiniLM-L6-v2) on onnxruntime or LiteRT.

Theory of operation: `tokenizer.json` (a `tokenizers` WordPiece tokenizer, no torch) turns text into
at most `max_tokens` ids ([CLS] ... [SEP]); the backend runs the exported transformer, which already
includes mean pooling over the attention mask and L2 normalisation. The result is re-normalised in
numpy (cheap, and guarantees unit length whatever the runtime's rounding). Rows are sorted by length
before batching so padding stays small, and returned in input order. Dynamically quantised (int8)
models run row by row, because their activation scale spans the whole batch: that way a text's
vector never depends on what it was batched with (LiteRT runs rows singly anyway). All model bytes are checked
against the manifest's SHA-256 before a runtime sees them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer

from edgebox.models.backends import EmbedBackend, FloatArray, LiteRTEmbedBackend, OnnxEmbedBackend
from edgebox.models.config import ModelsConfig
from edgebox.models.errors import ManifestInvalidError
from edgebox.models.manifest import Manifest

TOKENIZER_FILE = "tokenizer.json"
EMBEDDER_FILES = {
    ("onnx", "fp32"): "embedder-fp32.onnx",
    ("onnx", "int8"): "embedder-int8.onnx",
    ("litert", "int8"): "embedder-int8.tflite",
}


def load_tokenizer(manifest: Manifest, max_tokens: int) -> Tokenizer:
    tokenizer = Tokenizer.from_str(manifest.read_verified(TOKENIZER_FILE).decode("utf-8"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_tokens)
    return tokenizer


class Embedder:
    """L2-normalised float32 sentence embeddings; one API for both runtimes."""

    def __init__(self, config: ModelsConfig | None = None, *, manifest: Manifest | None = None) -> None:
        self.config = config or ModelsConfig.from_env()
        self.manifest = manifest or Manifest.load(self.config.models_dir)
        section = self.manifest.section("embedder")
        self.dim = int(section.get("dim", 0))
        if self.dim <= 0:
            raise ManifestInvalidError("manifest embedder section lacks dim")
        self.max_tokens = min(self.config.max_tokens, int(section.get("max_tokens", 256)))
        self.runtime = self.config.runtime
        self.variant = f"{self.config.runtime}-{self.config.precision}"
        self._tokenizer = load_tokenizer(self.manifest, self.max_tokens)
        filename = EMBEDDER_FILES[(self.config.runtime, self.config.precision)]
        model = self.manifest.read_verified(filename)
        self._backend: EmbedBackend
        if self.config.runtime == "litert":
            buckets = [int(b) for b in section.get("litert_buckets", [])]
            if not buckets:
                raise ManifestInvalidError("manifest embedder section lacks litert_buckets")
            self._backend = LiteRTEmbedBackend(model, buckets, threads=self.config.threads)
        else:
            per_row = self.config.precision == "int8"
            self._backend = OnnxEmbedBackend(model, threads=self.config.threads, per_row=per_row)

    def tokenize(self, texts: Sequence[str], max_tokens: int | None = None) -> list[list[int]]:
        limit = self.max_tokens if max_tokens is None else max(2, min(max_tokens, self.max_tokens))
        encodings = self._tokenizer.encode_batch(list(texts))
        return [
            enc.ids if len(enc.ids) <= limit else [*enc.ids[: limit - 1], enc.ids[-1]] for enc in encodings
        ]

    def embed(
        self, texts: Sequence[str], *, batch_size: int = 16, max_tokens: int | None = None
    ) -> FloatArray:
        """Embed `texts` -> float32 array (len(texts), dim), each row of unit L2 norm."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of strings, not one string")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch_size = max(1, batch_size)
        ids = self.tokenize(texts, max_tokens)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out[chunk] = self._backend.run([ids[i] for i in chunk])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.maximum(norms, 1e-12)
        return out
