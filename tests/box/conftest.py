"""Box tests use real components: the gateway's fixtures (device CA, stub upstream, gateway), the
built local models (`make models`), real sockets."""

from __future__ import annotations

import pytest

from edgebox.box.textmodels import TextModels
from edgebox.models.builder import input_hash, is_current
from edgebox.models.config import default_data_dir, default_models_dir
from tests.gateway.support import boxes_dir, make_gateway, pki, upstream  # noqa: F401


@pytest.fixture(scope="session")
def text_models() -> TextModels:
    directory = default_models_dir()
    if not is_current(directory, input_hash(default_data_dir())):
        pytest.fail(f"models in {directory} are missing or stale: run `make models` first", pytrace=False)
    return TextModels.load("model")
