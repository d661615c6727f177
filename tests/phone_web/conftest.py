from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgebox.box.textmodels import TextModels
from edgebox.errors import EdgeboxError
from tests.gateway.support import make_gateway, pki, upstream  # noqa: F401  (the box daemon tests)
from tests.phone_web.support import Box, Web, start_box, stop_box, web_page


@pytest.fixture
async def web() -> AsyncIterator[Web]:
    async for w in web_page():
        yield w


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Box]:
    b = await start_box(tmp_path / "box")
    yield b
    await stop_box(b)


@pytest.fixture(scope="session")
def text_models() -> TextModels:
    """The built local models, for tests that run the real box daemon (`make models`)."""
    try:
        return TextModels.load("model")
    except EdgeboxError as exc:
        pytest.fail(f"the local models are not usable ({exc}): run `make models` first", pytrace=False)
