"""`edgebox box run --websocket HOST:PORT`: the development link the web phone uses, from the CLI."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from edgebox.phone import client
from edgebox.phone.keystore import PhoneKeystore
from edgebox.session.invite import PairingInvite
from edgebox.transport import websocket

# A development box that answers with an echo and scores prompts with the rule classifier (the
# daemon still loads the embedder for its cache: `make unit` builds the models first).
CONFIG = """
[box]
state_dir = "{state}"
dev_key_files = true
print_invite = true
[pipeline]
classifier = "rules"
[dev]
echo = true
"""


async def test_box_run_serves_the_websocket_link(tmp_path: Path) -> None:
    config = tmp_path / "box.toml"
    config.write_text(CONFIG.format(state=tmp_path / "box"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgebox", "box", "--config", str(config),
        "run", "--websocket", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        url = code = None
        async with asyncio.timeout(60):
            while url is None or code is None:
                line = (await proc.stdout.readline()).decode()
                assert line, "box exited early"
                if m := re.search(r"(ws://127\.0\.0\.1:\d+/link)", line):
                    url = m.group(1)
                if m := re.search(r"(EDGEBOX1:[A-Z2-7]+)", line):
                    code = m.group(1)
        keystore = PhoneKeystore.load_or_create(tmp_path / "phone.json")
        session = await client.pair(await websocket.connect(url), keystore, PairingInvite.decode(code))
        assert (await session.ask("over the development link")).text == "over the development link"
        await session.close()
    finally:
        proc.terminate()
        await proc.wait()
