"""Tests of the built SD image (var/image/edgebox-rpi-arm64.img).

The image build (minutes) and the qemu boots (minutes, TCG) run from `make image-test`, which builds
the image first and sets EDGEBOX_IMAGE_TESTS=1; a plain `pytest` run skips the `image`-marked tests
instead of building anything. The image builder's own logic (check_generic, ...) is always tested.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE = Path(os.environ.get("EDGEBOX_IMAGE", REPO / "var" / "image" / "edgebox-rpi-arm64.img"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "image: needs the built SD image (make image-test)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("EDGEBOX_IMAGE_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="SD image tests run from `make image-test` (EDGEBOX_IMAGE_TESTS=1)")
    for item in items:
        if item.get_closest_marker("image") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def image() -> Path:
    assert IMAGE.exists(), f"{IMAGE} missing: `make image` builds it"
    return IMAGE


def load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("edgebox_image_build", REPO / "image" / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
