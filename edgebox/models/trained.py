"""What this project trained, committed in the repo: `edgebox/models/params/`.

Theory of operation: `edgebox models train --data DIR` (the only step that needs the training data)
writes the parameters into the params directory; they are committed. `params.json` pins every file
there by SHA-256 and size and records how they were made (feature version, dimensions, training
data hash, evaluation). `edgebox models build` (no training data) reads them through `load()`,
which refuses a file whose bytes differ from the pin (`ModelBuildError`), and applies them on top
of the base encoder from its PyPI package. Files:

- `injection-head.npy`: the classifier's linear head, float32 `[w_0 .. w_{F-1}, b]` over the feature
  row of edgebox.models.features (score = sigmoid(x.w + b));
- `reference-prompts.json` + `reference-embeddings.npy`: sentence-transformers' embeddings of a fixed
  prompt set (made once in the torch venv, `python -m edgebox.models.build reference`); the build
  compares its own ONNX encoder with them, so a wrong graph fails the build instead of shipping.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgebox.models.errors import ModelBuildError

PARAMS_DIR = Path(__file__).resolve().parent / "params"
PARAMS_NAME = "params.json"
PARAMS_FORMAT = 1
HEAD_FILE = "injection-head.npy"
REFERENCE_PROMPTS = "reference-prompts.json"
REFERENCE_EMBEDDINGS = "reference-embeddings.npy"


def npy_bytes(array: npt.NDArray[Any]) -> bytes:
    """Deterministic .npy bytes (same array -> same bytes)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def npy_load(data: bytes) -> npt.NDArray[Any]:
    return np.asarray(np.load(io.BytesIO(data), allow_pickle=False))


@dataclass(frozen=True, slots=True)
class TrainedParams:
    directory: Path
    meta: dict[str, Any]
    raw: bytes  # params.json as committed (part of the build's input hash)

    def read(self, name: str) -> bytes:
        """The bytes of committed file `name`, checked against its pin in params.json."""
        entry = self.meta.get("files", {}).get(name)
        if not isinstance(entry, dict):
            raise ModelBuildError(f"{PARAMS_NAME} does not list {name}")
        try:
            data = (self.directory / name).read_bytes()
        except OSError as exc:
            raise ModelBuildError(f"committed parameter file {name} is missing: {exc.strerror}") from exc
        if hashlib.sha256(data).hexdigest() != entry.get("sha256") or len(data) != entry.get("size"):
            raise ModelBuildError(f"committed parameter file {name} does not match its SHA-256 pin")
        return data

    def head(self) -> npt.NDArray[np.float32]:
        array = npy_load(self.read(HEAD_FILE)).astype(np.float32)
        if array.ndim != 1 or len(array) != int(self.meta["feature_dim"]) + 1:
            raise ModelBuildError("classifier head has the wrong size for its feature_dim")
        return array

    def reference(self) -> tuple[list[str], npt.NDArray[np.float32]]:
        prompts = json.loads(self.read(REFERENCE_PROMPTS))
        vectors = npy_load(self.read(REFERENCE_EMBEDDINGS)).astype(np.float32)
        if not isinstance(prompts, list) or vectors.shape[0] != len(prompts):
            raise ModelBuildError("reference prompts and embeddings differ in length")
        return [str(p) for p in prompts], vectors


def load(directory: Path = PARAMS_DIR) -> TrainedParams:
    path = directory / PARAMS_NAME
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelBuildError(f"no committed parameters at {path}: {exc.strerror}") from exc
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise ModelBuildError(f"{path} is not valid JSON") from exc
    if not isinstance(meta, dict) or meta.get("format") != PARAMS_FORMAT:
        raise ModelBuildError(f"{path} has an unknown format (want {PARAMS_FORMAT})")
    return TrainedParams(directory=directory, meta=meta, raw=raw)


def write(directory: Path, meta: dict[str, Any], files: dict[str, bytes]) -> None:
    """Write parameter files, then params.json (pinning them) last, each atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    table = dict(meta.get("files", {}))
    for name, data in sorted(files.items()):
        tmp = directory / (name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(directory / name)
        table[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    body = {**meta, "format": PARAMS_FORMAT, "files": dict(sorted(table.items()))}
    tmp = directory / (PARAMS_NAME + ".tmp")
    tmp.write_text(json.dumps(body, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(directory / PARAMS_NAME)
