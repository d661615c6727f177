"""Box benchmark: what the box adds to an answer, a cache hit, and the daemon's memory, all loaded.

Theory of operation (one run, baseline beside each figure):
* `box_added_ms_to_first_chunk_p50`: a phone asks through the box daemon (`BoxDaemon`, the pipeline
  with the trained classifier and a semantic-cache lookup on every prompt) over the in-process
  loopback link with a BLE-sized MTU; the box forwards to the real gateway (mTLS) and a stub upstream
  that answers at once. The baseline is the same request sent straight to the gateway with the box's
  certificate, interleaved with the box runs. Figure = p50(box) - p50(direct). Every question is a
  fresh random sentence, so each lookup misses and every request goes the whole way.
* `cache_hit_answer_ms_p50`: the same question again, answered from the cache (send to `done`).
* `rss_mb_all_loaded`: the resident memory of a separate `edgebox box run --config` process with the
  models loaded, a branch document added and a few prompts answered (VmRSS from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

WORDS = (
    "river",
    "lamp",
    "orange",
    "window",
    "quiet",
    "market",
    "silver",
    "engine",
    "garden",
    "winter",
    "paper",
    "number",
    "candle",
    "forest",
    "mirror",
    "planet",
    "castle",
    "yellow",
    "violin",
    "rocket",
    "harbor",
    "pencil",
    "meadow",
    "bridge",
    "tunnel",
    "cookie",
    "thunder",
    "velvet",
    "saddle",
    "anchor",
    "basket",
    "pillow",
    "marble",
    "compass",
    "lantern",
    "ribbon",
    "puzzle",
    "island",
    "canyon",
    "glacier",
    "desert",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=40, help="requests per measured path")
    parser.add_argument("--quick", action="store_true", help="few requests (smoke test only)")


class _FastUpstream:
    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for word in ("A", " short", " answer."):
            chunk = {"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        usage = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
        await resp.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp


def _question(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(12)) + "?"


def _p50(values: list[float]) -> float:
    return statistics.median(values) * 1000


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _bench(work: Path, n: int) -> dict[str, Any]:
    from edgebox.box.config import parse_box_config
    from edgebox.box.daemon import BoxDaemon
    from edgebox.box.notify import Notifier
    from edgebox.box.state import init_state
    from edgebox.gateway.config import GatewayConfig
    from edgebox.gateway.secret import UpstreamKey
    from edgebox.gateway.server import Gateway
    from edgebox.log import configure_logging
    from edgebox.phone import client
    from edgebox.phone.keystore import PhoneKeystore
    from edgebox.pki.ca import DeviceCA, key_pem, make_csr
    from edgebox.session import messages as app
    from edgebox.transport.loopback import LoopbackListener

    configure_logging("error")
    upstream_app = web.Application()
    upstream_app.router.add_post("/v1/chat/completions", _FastUpstream().handle)
    runner = web.AppRunner(upstream_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    upstream_url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    ca = DeviceCA.create(work / "pki")
    ca.write_server_cert(["localhost", "127.0.0.1"])
    (work / "upstream.key").write_text("sk-bench-upstream\n")
    gateway = Gateway(
        GatewayConfig(
            listen_port=0,
            pki_dir=str(ca.directory),
            upstream_url=upstream_url,
            upstream_key_file=str(work / "upstream.key"),
            audit_file=str(work / "audit.jsonl"),
            quota_tokens=10_000_000,
            anomaly=_anomaly_off(),
        ),
        upstream_key=UpstreamKey("sk-bench-upstream"),
    )
    await gateway.start()
    state = init_state(work / "box", dev=True)
    ident = state.identity
    issued = ca.issue_box(make_csr(ident.private_key), ident.box_id_hex)
    (work / "box" / "box.crt").write_bytes(issued.pem)
    (work / "box" / "direct.key").write_bytes(key_pem(ident.private_key))
    (work / "box" / "direct.key").chmod(0o600)
    state.close()
    doc = {
        "box": {"state_dir": str(work / "box"), "dev_key_files": True},
        "ble": {"enabled": False},
        "gateway": {"url": f"https://127.0.0.1:{gateway.port}", "ca_file": str(ca.cert_path)},
        "pipeline": {"quota_tokens": 10_000_000, "flood_requests": 100_000},
    }
    cfg = parse_box_config(doc)
    listener = LoopbackListener(mtu=244)
    daemon = BoxDaemon(cfg, listeners=[listener], notifier=Notifier({}))
    running = asyncio.create_task(daemon.run())
    await asyncio.wait_for(daemon.ready.wait(), 300)
    rng = random.Random(3)  # noqa: S311 (benchmark questions)
    ctx = ssl.create_default_context(cafile=str(ca.cert_path))
    ctx.load_cert_chain(str(work / "box" / "box.crt"), str(work / "box" / "direct.key"))
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))
    try:
        ks = PhoneKeystore.load_or_create(work / "phone.json")
        session = await client.pair(listener.connect(), ks, await daemon.control.create_invite())

        async def via_box(q: str) -> float:
            t0 = time.perf_counter()
            first = None
            async for item in session.ask_stream(q, max_tokens=64):
                if first is None and isinstance(item, str) and item:
                    first = time.perf_counter() - t0
                elif isinstance(item, app.Done):
                    assert item.source == "gateway", item.source
            assert first is not None
            return first

        async def direct(q: str) -> float:
            body = {
                "model": "default",
                "messages": [{"role": "user", "content": q}],
                "stream": True,
                "max_tokens": 64,
            }
            t0 = time.perf_counter()
            first = None
            async with http.post(f"https://127.0.0.1:{gateway.port}/v1/chat/completions", json=body) as resp:
                async for line in resp.content:
                    if first is None and line.startswith(b"data:") and b'"content"' in line:
                        first = time.perf_counter() - t0
            assert first is not None
            return first

        for _ in range(3):  # warm-up: TLS sessions, model sessions, code paths
            await via_box(_question(rng))
            await direct(_question(rng))
        box_t, direct_t = [], []
        for _ in range(n):
            box_t.append(await via_box(_question(rng)))
            direct_t.append(await direct(_question(rng)))
        cached_q = _question(rng)
        await session.ask(cached_q)
        hits = []
        for _ in range(n):
            t0 = time.perf_counter()
            answer = await session.ask(cached_q)
            hits.append(time.perf_counter() - t0)
            assert answer.done is not None and answer.done.source == "cache"
        await session.close()
    finally:
        await http.close()
        daemon.request_stop()
        await asyncio.gather(running, return_exceptions=True)
    rss = await _rss_of_daemon(work, cfg_doc=doc)
    await gateway.stop()
    await runner.cleanup()
    return {
        "box_added_ms_to_first_chunk_p50": round(_p50(box_t) - _p50(direct_t), 2),
        "box_ms_to_first_chunk_p50": round(_p50(box_t), 2),
        "direct_gateway_ms_to_first_chunk_p50": round(_p50(direct_t), 2),
        "cache_hit_answer_ms_p50": round(_p50(hits), 2),
        "rss_mb_all_loaded": round(rss, 1),
        "requests": n,
    }


def _anomaly_off() -> Any:
    from edgebox.gateway.config import AnomalyConfig

    return AnomalyConfig(enabled=False)


async def _rss_of_daemon(work: Path, cfg_doc: dict[str, Any]) -> float:
    """Start `edgebox box run --config` as its own process, load it fully, read its RSS."""
    from edgebox.box.config import parse_box_config, to_toml
    from edgebox.box.control_socket import call, encode_file
    from edgebox.phone import client
    from edgebox.phone.keystore import PhoneKeystore
    from edgebox.session.invite import PairingInvite
    from edgebox.transport import unix

    sock = work / "phones.sock"
    doc = {**cfg_doc, "dev": {"socket": str(sock)}}
    conf = work / "box.toml"
    conf.write_text(to_toml(parse_box_config(doc)))
    cfg = parse_box_config(doc)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgebox", "box", "--config", str(conf), "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                await call(cfg.control_socket_path, "status")
                break
            except Exception:
                await asyncio.sleep(0.2)
        text = work / "branch.md"
        text.write_text("# Branch\n\n" + "The branch is open from 9:00 to 17:00 on weekdays. " * 200)
        await call(cfg.control_socket_path, "docs_add", {"files": [encode_file(text)]})
        code = (await call(cfg.control_socket_path, "invite"))["code"]
        ks = PhoneKeystore.load_or_create(work / "rss-phone.json")
        session = await client.pair(await unix.connect(sock), ks, PairingInvite.decode(code))
        for i in range(5):
            await session.ask(f"When is the branch open? ({i})")
            await session.ask(_question(random.Random(i)))  # noqa: S311
        await session.close()
        return _rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(args: argparse.Namespace) -> dict[str, Any]:
    n = 8 if getattr(args, "quick", False) else int(getattr(args, "requests", 40))
    with tempfile.TemporaryDirectory(prefix="edgebox-bench-box-") as tmp:
        result = asyncio.run(_bench(Path(tmp), n))
    result["cpu_count"] = os.cpu_count()
    return result
