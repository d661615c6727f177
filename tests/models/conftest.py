"""Fixtures for the local-model tests: the real built models (built here if `make models` has not run)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgebox.models.builder import is_current
from edgebox.models.config import ModelsConfig, default_models_dir
from edgebox.models.manifest import Manifest


@pytest.fixture(scope="session")
def models_dir() -> Path:
    directory = default_models_dir()
    if not is_current(directory, litert=True):
        # The LiteRT conversion takes minutes (more than a test's timeout): `make test` builds first.
        pytest.fail(
            f"models in {directory} are missing or stale: run `make models-litert` first", pytrace=False
        )
    return directory


@pytest.fixture(scope="session")
def manifest(models_dir: Path) -> Manifest:
    return Manifest.load(models_dir)


@pytest.fixture(scope="session", params=["onnx", "litert"])
def runtime_config(request: pytest.FixtureRequest, models_dir: Path) -> ModelsConfig:
    return ModelsConfig(models_dir=models_dir, runtime=request.param, precision="int8")


def copy_models(src: Path, dst: Path, names: list[str]) -> Path:
    """A models dir with the manifest and only `names` copied (others absent)."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / "manifest.json", dst / "manifest.json")
    for name in names:
        shutil.copy2(src / name, dst / name)
    return dst
