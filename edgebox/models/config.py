"""Where the local models live and how they run.

Theory of operation: `ModelsConfig` is a small frozen value the box, the gateway and the CLI build
from their own configuration (or from the environment with `ModelsConfig.from_env()`). Defaults:
models in `<repo>/var/models` (override: EDGEBOX_MODELS_DIR), runtime `onnx` (or `litert`:
EDGEBOX_MODELS_RUNTIME), int8 embedder (EDGEBOX_MODELS_PRECISION=fp32 for the ONNX fp32 file; LiteRT
ships int8 only), injection threshold 0.5 (EDGEBOX_INJECTION_THRESHOLD). The training data for the
build is looked up at `<repo>/../shared/data/injection` (override: EDGEBOX_INJECTION_DATA).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgebox.errors import ConfigError

Runtime = Literal["onnx", "litert"]
Precision = Literal["int8", "fp32"]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODELS_DIR = REPO_ROOT / "var" / "models"
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "injection"
DEFAULT_THRESHOLD = 0.5
DEFAULT_MAX_TOKENS = 256


def default_models_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    value = env.get("EDGEBOX_MODELS_DIR")
    return Path(value) if value else DEFAULT_MODELS_DIR


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    value = env.get("EDGEBOX_INJECTION_DATA")
    return Path(value) if value else DEFAULT_DATA_DIR


@dataclass(frozen=True, slots=True)
class ModelsConfig:
    models_dir: Path = DEFAULT_MODELS_DIR
    runtime: Runtime = "onnx"
    precision: Precision = "int8"
    threshold: float = DEFAULT_THRESHOLD
    max_tokens: int = DEFAULT_MAX_TOKENS
    threads: int = 1

    def __post_init__(self) -> None:
        if self.runtime not in ("onnx", "litert"):
            raise ConfigError("models runtime must be 'onnx' or 'litert'")
        if self.precision not in ("int8", "fp32"):
            raise ConfigError("models precision must be 'int8' or 'fp32'")
        if self.runtime == "litert" and self.precision != "int8":
            raise ConfigError("the LiteRT embedder is shipped as int8 only")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError("injection threshold must be within [0, 1]")
        if not 8 <= self.max_tokens <= 256:
            raise ConfigError("max_tokens must be within [8, 256]")
        if not 1 <= self.threads <= 64:
            raise ConfigError("threads must be within [1, 64]")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ModelsConfig:
        env = os.environ if env is None else env
        runtime = env.get("EDGEBOX_MODELS_RUNTIME", "onnx")
        precision = env.get("EDGEBOX_MODELS_PRECISION", "int8")
        try:
            threshold = float(env.get("EDGEBOX_INJECTION_THRESHOLD", str(DEFAULT_THRESHOLD)))
            threads = int(env.get("EDGEBOX_MODELS_THREADS", "1"))
        except ValueError as exc:
            raise ConfigError("EDGEBOX_INJECTION_THRESHOLD / EDGEBOX_MODELS_THREADS must be numbers") from exc
        if runtime not in ("onnx", "litert") or precision not in ("int8", "fp32"):
            raise ConfigError(
                "EDGEBOX_MODELS_RUNTIME must be onnx|litert, EDGEBOX_MODELS_PRECISION int8|fp32"
            )
        return cls(
            models_dir=default_models_dir(env),
            runtime=runtime,  # type: ignore[arg-type]
            precision=precision,  # type: ignore[arg-type]
            threshold=threshold,
            threads=threads,
        )
