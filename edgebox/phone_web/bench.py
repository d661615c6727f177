"""Web phone benchmark: handshake time in the browser and record throughput of lib/records.js.

Runs Debian's Chromium (headless, Playwright) on the bundle served from 127.0.0.1, against a real
box (encrypted store, BoxServer, echo responder) over the WebSocket development link, and prints:

* `web_handshake_ms`: median wall time, measured in the page with performance.now(), of a full
  session-mode connection (WebSocket open, capabilities, HELLO/BOX_AUTH/PHONE_AUTH/ACCEPT, all
  WebCrypto) to the box; `python_handshake_ms`: the same for the Python reference phone against the
  same box in the same run; `web_vs_python_handshake` = web / python.
* `web_records_per_s`: 244-byte DATA records sealed by one RecordLayer and opened by its peer, in
  the page; `raw_webcrypto_per_s`: AES-GCM encrypt + decrypt of the same payloads with WebCrypto
  directly; `record_vs_raw_webcrypto` = median of interleaved per-round ratios (raw time / record
  time), which cancels a noisy shared machine's drift.

Nothing here is asserted by the tests; timings are for comparison within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from edgebox.errors import EdgeboxError

CHROMIUM = "/usr/bin/chromium"

_PAGE_HANDSHAKES = """async ([url, code, n]) => {
  const {PhoneKeystore} = await import('/phone/lib/keystore.js');
  const {decodeInvite} = await import('/phone/lib/invite.js');
  const {pair, connect} = await import('/phone/lib/client.js');
  const {connectWebSocket} = await import('/phone/lib/transport/websocket.js');
  const ks = await PhoneKeystore.open('edgebox-bench');
  const invite = await decodeInvite(code);
  await (await pair(await connectWebSocket(url), ks, invite)).close();
  const box = await ks.box(invite.boxIdHex);
  const out = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const s = await connect(await connectWebSocket(url), ks, box);
    out.push(performance.now() - t0);
    await s.close();
  }
  return out;
}"""

_PAGE_RECORDS = """async ([count, size, rounds]) => {
  const {RecordLayer, DATA} = await import('/phone/lib/records.js');
  const sid = new Uint8Array(8), a = new Uint8Array(32).fill(1), b = new Uint8Array(32).fill(2);
  const payloads = Array.from({length: count}, () => crypto.getRandomValues(new Uint8Array(size)));
  const key = await crypto.subtle.importKey('raw', a, {name: 'AES-GCM'}, false, ['encrypt', 'decrypt']);
  const aad = new Uint8Array(12);
  const ratios = [], rec = [], raw = [];
  for (let r = 0; r < rounds; r++) {
    let t0 = performance.now();
    for (let i = 0; i < count; i++) {
      const iv = new Uint8Array(12); new DataView(iv.buffer).setUint32(8, i);
      const ct = await crypto.subtle.encrypt({name: 'AES-GCM', iv, additionalData: aad}, key, payloads[i]);
      await crypto.subtle.decrypt({name: 'AES-GCM', iv, additionalData: aad}, key, ct);
    }
    const rawT = performance.now() - t0;
    const tx = await RecordLayer.create(sid, a, b, 0), rx = await RecordLayer.create(sid, b, a, 0);
    t0 = performance.now();
    for (let i = 0; i < count; i++) await rx.open(await tx.seal(DATA, payloads[i], 0), 0);
    const recT = performance.now() - t0;
    raw.push(rawT); rec.push(recT); ratios.push(rawT / recT);
  }
  return {ratios, rec, raw};
}"""


class BenchError(EdgeboxError):
    code = "bench_unavailable"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--handshakes", type=int, default=20)
    parser.add_argument("--records", type=int, default=500, help="records per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--payload", type=int, default=244)


async def _python_handshakes(url: str, code: str, n: int, tmp: Path) -> list[float]:
    from edgebox.phone import client
    from edgebox.phone.keystore import PhoneKeystore
    from edgebox.session.invite import PairingInvite
    from edgebox.transport import websocket

    keystore = PhoneKeystore.load_or_create(tmp / "phone.json")
    invite = PairingInvite.decode(code)
    await (await client.pair(await websocket.connect(url), keystore, invite)).close()
    box = keystore.box(invite.box_id.hex())
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        session = await client.connect(await websocket.connect(url), keystore, box)
        out.append((time.perf_counter() - t0) * 1000)
        await session.close()
    return out


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    try:
        from playwright.async_api import async_playwright
    except ModuleNotFoundError:
        raise BenchError("the web phone bench needs playwright (a dev dependency)") from None
    if not Path(CHROMIUM).exists():
        raise BenchError("the web phone bench needs Debian's chromium (apt-get install chromium)")
    from edgebox import phone_web
    from edgebox.box.responder import EchoResponder
    from edgebox.box.server import BoxServer
    from edgebox.box.state import init_state
    from edgebox.session.config import DEFAULT_CONFIG
    from edgebox.transport.websocket import WebSocketListener

    with tempfile.TemporaryDirectory(prefix="edgebox-bench-web-") as d:
        tmp = Path(d)
        state = init_state(tmp / "box")
        # The box admits 1 new handshake per second after a burst of 10 (protocol.md 2.1); a bench
        # of back-to-back handshakes lifts that limit, nothing else.
        config = dataclasses.replace(DEFAULT_CONFIG, handshake_burst=1000, handshake_rate_per_s=1000.0)
        server = BoxServer(state.identity, state.registry, EchoResponder(), config=config)
        listener = WebSocketListener("127.0.0.1", 0)
        await listener.start()
        serving = asyncio.create_task(server.serve(listener))
        app = web.Application()
        app.add_routes(phone_web.routes())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        ident = state.identity

        def code() -> str:
            return state.registry.create_invite(ident.box_id, ident.key_hash, time.time()).encode()

        pw = await async_playwright().start()
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page()
            await page.goto(base + "/phone/?nosw")
            web_hs = await page.evaluate(_PAGE_HANDSHAKES, [listener.url, code(), args.handshakes])
            py_hs = await _python_handshakes(listener.url, code(), args.handshakes, tmp)
            rec = await page.evaluate(_PAGE_RECORDS, [args.records, args.payload, args.rounds])
        finally:
            await browser.close()
            await pw.stop()
            await runner.cleanup()
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
            await listener.close()
            state.close()
    web_ms, py_ms = statistics.median(web_hs), statistics.median(py_hs)
    n = args.records
    return {
        "web_handshake_ms": round(web_ms, 2),
        "web_handshake_ms_p90": round(sorted(web_hs)[int(len(web_hs) * 0.9)], 2),
        "python_handshake_ms": round(py_ms, 2),
        "web_vs_python_handshake": round(web_ms / py_ms, 3),
        "web_records_per_s": round(n / (statistics.median(rec["rec"]) / 1000)),
        "raw_webcrypto_per_s": round(n / (statistics.median(rec["raw"]) / 1000)),
        "record_vs_raw_webcrypto": round(statistics.median(rec["ratios"]), 3),
        "payload_bytes": args.payload,
        "browser": "chromium (Debian), headless",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    return asyncio.run(_run(args))
