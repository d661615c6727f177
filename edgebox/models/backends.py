"""Runtime backends: onnxruntime and LiteRT behind one small interface.

Theory of operation: a backend turns already-verified model bytes into something that maps arrays
to arrays. Two kinds of model run here: the sentence embedder (token ids + attention mask -> one
L2-normalised 384-d vector per row) and the injection classifier head (feature rows -> scores).
ONNX models take dynamic shapes, so a batch is padded to its longest row. The LiteRT embedder is a
single .tflite with one signature per fixed sequence-length bucket (e.g. `len32`, `len128`,
`len256`, weights shared): each row runs alone in the smallest bucket that fits, so short prompts do
not pay for 256 tokens. ONNX sessions may run concurrently; LiteRT interpreters are serialised
by a lock (they are not thread-safe). The runtimes are imported lazily, so importing
edgebox.models never pulls either in (and torch never).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edgebox.models.errors import ManifestInvalidError, RuntimeUnavailableError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


class EmbedBackend(Protocol):
    def run(self, ids: Sequence[Sequence[int]]) -> FloatArray: ...


class HeadBackend(Protocol):
    def run(self, features: FloatArray) -> FloatArray: ...


def _onnx_session(model: bytes, threads: int) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - dependency is declared
        raise RuntimeUnavailableError("onnxruntime is not installed") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def _litert_interpreter(model: bytes, threads: int) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:  # pragma: no cover - dependency is declared
        raise RuntimeUnavailableError("ai-edge-litert is not installed") from exc
    return Interpreter(model_content=model, num_threads=threads)


def _pad(rows: Sequence[Sequence[int]], length: int) -> tuple[IntArray, IntArray]:
    ids = np.zeros((len(rows), length), dtype=np.int64)
    mask = np.zeros((len(rows), length), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


class OnnxEmbedBackend:
    """`per_row=True` for dynamically quantised models: their activation scale is computed over the
    whole input tensor, so a row's vector would depend on its batch-mates (and on padding); run one
    row at a time, the same text always gives the same vector."""

    def __init__(self, model: bytes, *, threads: int = 1, per_row: bool = False) -> None:
        self._session = _onnx_session(model, threads)
        self._per_row = per_row

    def run(self, ids: Sequence[Sequence[int]]) -> FloatArray:
        if self._per_row and len(ids) > 1:
            return np.concatenate([self.run([row]) for row in ids])
        length = max(len(r) for r in ids)
        input_ids, mask = _pad(ids, length)
        out = self._session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]
        return np.asarray(out, dtype=np.float32)


class LiteRTEmbedBackend:
    def __init__(self, model: bytes, buckets: Sequence[int], *, threads: int = 1) -> None:
        self._interpreter = _litert_interpreter(model, threads)
        signatures = self._interpreter.get_signature_list()
        self._buckets = sorted(buckets)
        self._runners: dict[int, Any] = {}
        for length in self._buckets:
            name = f"len{length}"
            if name not in signatures:
                raise ManifestInvalidError(f"LiteRT embedder lacks signature {name}")
            self._runners[length] = self._interpreter.get_signature_runner(name)
        self._lock = threading.Lock()  # a LiteRT interpreter must not run on two threads at once

    def run(self, ids: Sequence[Sequence[int]]) -> FloatArray:
        with self._lock:
            return self._run(ids)

    def _run(self, ids: Sequence[Sequence[int]]) -> FloatArray:
        rows: list[FloatArray] = []
        for row in ids:
            length = next((b for b in self._buckets if b >= len(row)), self._buckets[-1])
            input_ids, mask = _pad([row[:length]], length)
            out = self._runners[length](
                input_ids=input_ids.astype(np.int32), attention_mask=mask.astype(np.int32)
            )
            rows.append(np.asarray(out["embedding"], dtype=np.float32).reshape(-1))
        return np.stack(rows)


class OnnxHeadBackend:
    def __init__(self, model: bytes, *, threads: int = 1) -> None:
        self._session = _onnx_session(model, threads)

    def run(self, features: FloatArray) -> FloatArray:
        out = self._session.run(None, {"features": features.astype(np.float32, copy=False)})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)


class LiteRTHeadBackend:
    def __init__(self, model: bytes, *, threads: int = 1) -> None:
        interpreter = _litert_interpreter(model, threads)
        if "head" not in interpreter.get_signature_list():
            raise ManifestInvalidError("LiteRT classifier head lacks signature 'head'")
        self._runner = interpreter.get_signature_runner("head")
        self._interpreter = interpreter
        self._lock = threading.Lock()

    def run(self, features: FloatArray) -> FloatArray:
        with self._lock:
            return self._run(features)

    def _run(self, features: FloatArray) -> FloatArray:
        scores = [
            float(np.asarray(self._runner(features=row[None, :].astype(np.float32))["score"]).reshape(-1)[0])
            for row in features
        ]
        return np.asarray(scores, dtype=np.float32)
