from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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
