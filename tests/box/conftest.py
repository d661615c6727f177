"""Box tests use real components: the gateway's fixtures (device CA, stub upstream, gateway), the
built local models (`make models`), real sockets."""

from __future__ import annotations

import pytest

from edgebox.box.textmodels import TextModels
from edgebox.errors import EdgeboxError
from tests.gateway.support import boxes_dir, log_stream, make_gateway, pki, upstream  # noqa: F401


@pytest.fixture(scope="session")
def text_models() -> TextModels:
    try:
        return TextModels.load("model")
    except EdgeboxError as exc:
        pytest.fail(f"the local models are not usable ({exc}): run `make models` first", pytrace=False)
