"""`edgebox gateway` starts from the embedded defaults (creating a PKI when none exists) and serves."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from edgebox.pki.ca import DeviceCA
from tests.gateway.support import StubUpstream, chat_body, make_box


async def test_gateway_starts_with_defaults(tmp_path: Path, upstream: StubUpstream) -> None:
    key = tmp_path / "k"
    key.write_text("sk-cli-test-123456789\n")
    port_file = tmp_path / "port"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgebox",
        "gateway",
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--upstream-url",
        upstream.url,
        "--upstream-key-file",
        str(key),
        cwd=tmp_path,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        for _ in range(300):
            if port_file.exists() and port_file.read_text():
                break
            assert proc.returncode is None
            await asyncio.sleep(0.05)
        port = int(port_file.read_text())
        ca = DeviceCA.load(tmp_path / "var" / "pki")  # created by the gateway on first start
        (tmp_path / "b").mkdir()
        box = make_box(ca, "box-cli", tmp_path / "b")
        import aiohttp

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=box.ssl_context(ca))) as c:
            r = await c.post(f"https://127.0.0.1:{port}/v1/chat/completions", json=chat_body())
            assert r.status == 200
            r = await c.get(f"https://127.0.0.1:{port}/openapi.json")
            assert (await r.json())["openapi"] == "3.1.0"
        assert upstream.requests[-1][0]["Authorization"] == "Bearer sk-cli-test-123456789"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    assert b"sk-cli-test" not in err  # the key never reaches stderr
    assert b'"device":"box-cli"' in err  # audit lines go to stderr by default
