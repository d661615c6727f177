"""`edgebox demo`: the whole path end to end on one machine, no hardware, embedded defaults.

What it shows (a readable transcript on stdout): a box identity is made, a pairing code is shown
as the QR code the admin page would display, a simulated phone pairs from it over an in-process
link with a BLE-sized MTU (the same framing, handshake and records as over the air), reconnects
with its long-term key, and round-trips a prompt that streams back. Wrong-key and reused-code
attempts are shown failing closed.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from edgebox.box.cli import render_invite
from edgebox.box.identity import BoxIdentity
from edgebox.box.registry import MemoryRegistry
from edgebox.box.responder import EchoResponder
from edgebox.box.server import BoxServer
from edgebox.phone import client
from edgebox.phone.keystore import PairedBox, PhoneKeystore
from edgebox.session.connection import phone_id
from edgebox.session.errors import SessionError
from edgebox.transport.loopback import LoopbackListener

MTU = 244


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run box + simulated phone end to end and print a transcript")
    p.add_argument("--no-qr", action="store_true", help="do not draw the QR code")
    p.set_defaults(func=_run)


def _say(step: str, text: str = "") -> None:
    print(f"[{step}] {text}" if text else f"[{step}]", flush=True)


async def demo(show_qr: bool = True) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="edgebox-demo-"))
    box = BoxIdentity.generate()
    registry = MemoryRegistry()
    server = BoxServer(box, registry, EchoResponder(piece=24))
    listener = LoopbackListener(mtu=MTU)
    serving = asyncio.create_task(server.serve(listener))
    _say("box", f"identity created: box id {box.box_id_hex}, key hash {box.key_hash.hex()[:16]}...")

    invite = registry.create_invite(box.box_id, box.key_hash, time.time(), ttl=300)
    _say("admin page", "pairing QR code (single use, expires in 5 min):")
    print(render_invite(invite, qr=show_qr), flush=True)

    phone = PhoneKeystore.load_or_create(workdir / "phone.json")
    _say("phone", f"key file {phone.path} (mode 0600), phone id {phone_id(phone.public_point)}")
    t0 = time.perf_counter()
    session = await client.pair(listener.connect(), phone, invite)
    _say(
        "pair",
        f"box key matched the QR pin; phone enrolled; session {session.session_id.hex()} "
        f"({(time.perf_counter() - t0) * 1000:.1f} ms)",
    )
    await session.close()

    paired = phone.box(box.box_id_hex)
    session = await client.connect(listener.connect(), phone, paired)
    _say("session", f"SIGMA-I handshake with long-term keys; new session {session.session_id.hex()}")
    question = "What are the opening hours of the branch on Saturday?"
    _say("phone -> box", f"prompt: {question!r}")
    pieces: list[str] = []
    async for item in session.ask_stream(
        question, trace="00-" + "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    ):
        if isinstance(item, str):
            pieces.append(item)
            _say("box -> phone", f"chunk {len(pieces) - 1}: {item!r}")
        else:
            _say("box -> phone", f"done: source={item.source} usage={item.usage.total_tokens} tokens")
    await session.ping()
    _say("phone", "ping/pong ok; closing the session with an authenticated CLOSE record")
    await session.close()

    _say("check", "reusing the same pairing code:")
    try:
        s = await client.pair(
            listener.connect(), PhoneKeystore.load_or_create(workdir / "other.json"), invite
        )
        await s.close()
        _say("check", "UNEXPECTED: accepted")
    except SessionError as exc:
        _say("check", f"refused as expected [{exc.code}]")
    _say("check", "a box presenting a different key (man in the middle):")
    fake = PairedBox(paired.box_id, bytes(32), paired.paired_at)
    try:
        s = await client.connect(listener.connect(), phone, fake)
        await s.close()
        _say("check", "UNEXPECTED: accepted")
    except SessionError as exc:
        _say("check", f"refused as expected [{exc.code}]")

    serving.cancel()
    await asyncio.gather(serving, return_exceptions=True)
    st = server.stats
    _say("box", f"links={st.links} sessions={st.sessions} pairings={st.pairings} refused={st.refused}")
    print("demo OK", flush=True)


def _run(args: argparse.Namespace) -> int:
    asyncio.run(demo(show_qr=not args.no_qr))
    return 0
