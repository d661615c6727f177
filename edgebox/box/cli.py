"""`edgebox box ...`: the box's identity, pairing codes, and the session server.

edgebox box init                 create the box identity (box id + long-term P-256 key)
edgebox box run --socket PATH    serve phones on a Unix socket (development transport)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from pathlib import Path

import segno

from edgebox import paths
from edgebox.box.identity import BoxIdentity
from edgebox.box.registry import MemoryRegistry
from edgebox.box.responder import EchoResponder
from edgebox.box.server import BoxServer
from edgebox.session.invite import DEFAULT_TTL_SECONDS, PairingInvite, new_invite


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("box", help="the branch box: identity and session server")
    p.add_argument("--state-dir", type=Path, default=None, help="default: $EDGEBOX_STATE_DIR or ./var/box")
    bsub = p.add_subparsers(dest="box_command", required=True, metavar="ACTION")
    init = bsub.add_parser("init", help="create the box identity if missing and print it")
    init.set_defaults(func=_run_init)
    run = bsub.add_parser("run", help="serve phones (prints a pairing code at start)")
    run.add_argument("--socket", type=Path, required=True, help="Unix socket to listen on")
    run.add_argument("--ttl", type=int, default=DEFAULT_TTL_SECONDS, help="pairing code lifetime, seconds")
    run.set_defaults(func=_run_serve)


def _identity(args: argparse.Namespace) -> BoxIdentity:
    state = args.state_dir or paths.state_dir()
    return BoxIdentity.load_or_create(state / "identity.json")


def render_invite(invite: PairingInvite) -> str:
    """The pairing code as a terminal QR code plus its text (what the admin page shows)."""
    qr = segno.make(invite.encode(), error="m")
    import io

    buf = io.StringIO()
    qr.terminal(out=buf, compact=True, border=2)
    return buf.getvalue() + invite.encode()


def _run_init(args: argparse.Namespace) -> int:
    ident = _identity(args)
    print(f"box id:       {ident.box_id_hex}")
    print(f"box key hash: {ident.key_hash.hex()}")
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    from edgebox.transport.unix import SeqpacketListener

    ident = _identity(args)
    registry = MemoryRegistry()
    invite = new_invite(ident.box_id, ident.key_hash, time.time(), ttl=args.ttl)
    registry.add_invite(invite)
    print(render_invite(invite), flush=True)

    async def go() -> None:
        listener = SeqpacketListener(args.socket)
        try:
            await BoxServer(ident, registry, EchoResponder()).serve(listener)
        finally:
            await listener.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())
    return 0
