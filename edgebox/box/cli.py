"""`edgebox box ...`: the box's identity, pairing codes, enrolled phones and the session server.

edgebox box init                         create identity, database key and encrypted store
edgebox box invite [--ttl 300]           a new single-use pairing code (QR on the terminal)
edgebox box phones                       list enrolled phones
edgebox box revoke PHONE_ID              revoke a phone (its sessions are refused from now on)
edgebox box run --socket PATH | --ble    serve phones (prints a fresh pairing code at start)
edgebox box admin ...                    the admin web page (see edgebox/admin/cli.py)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import time
from pathlib import Path

import segno

from edgebox import paths
from edgebox.box.responder import EchoResponder, Responder
from edgebox.box.server import BoxServer
from edgebox.box.state import BoxState, init_state, open_state
from edgebox.box.uplink import GatewayResponder, UplinkConfig
from edgebox.errors import ConfigError, EdgeboxError
from edgebox.session.invite import DEFAULT_TTL_SECONDS, PairingInvite
from edgebox.transport.base import LinkListener


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("box", help="the branch box: identity, pairing, phones, session server")
    p.add_argument("--state-dir", type=Path, default=None, help="default: $EDGEBOX_STATE_DIR or ./var/box")
    bsub = p.add_subparsers(dest="box_command", required=True, metavar="ACTION")
    bsub.add_parser("init", help="create identity, key and store if missing").set_defaults(func=_run_init)
    inv = bsub.add_parser("invite", help="make a single-use pairing code")
    inv.add_argument("--ttl", type=int, default=DEFAULT_TTL_SECONDS, help="lifetime in seconds")
    inv.add_argument("--no-qr", action="store_true")
    inv.set_defaults(func=_run_invite)
    bsub.add_parser("phones", help="list enrolled phones").set_defaults(func=_run_phones)
    rev = bsub.add_parser("revoke", help="revoke an enrolled phone")
    rev.add_argument("phone_id")
    rev.set_defaults(func=_run_revoke)
    run = bsub.add_parser("run", help="serve phones (prints a pairing code at start)")
    where = run.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket", type=Path, help="Unix socket to listen on (development)")
    where.add_argument("--ble", action="store_true", help="BLE GATT peripheral through BlueZ")
    run.add_argument("--adapter", default=None, help="Bluetooth adapter for --ble (default: hci0)")
    # Two rotating advertisement instances: needed under btvirt (virtual HIL tier), harmless elsewhere.
    run.add_argument("--adv-instances", type=int, default=1, help=argparse.SUPPRESS)
    run.add_argument("--ttl", type=int, default=DEFAULT_TTL_SECONDS, help="pairing code lifetime, seconds")
    up = run.add_argument_group("uplink (without --gateway the box answers with an echo)")
    up.add_argument("--gateway", default=None, help="gateway URL, e.g. https://gw.example:8443")
    up.add_argument("--gateway-ca", type=Path, help="device CA certificate (pins the gateway)")
    up.add_argument("--cert", type=Path, help="this box's client certificate (PEM)")
    up.add_argument("--key", type=Path, help="its private key (PEM, 0600)")
    up.add_argument("--model", default="default", help="model name sent to the gateway")
    run.set_defaults(func=_run_serve)
    from edgebox.admin.cli import register as register_admin  # `edgebox box admin ...` (issue 13)

    register_admin(bsub)


def _root(args: argparse.Namespace) -> Path:
    root: Path = args.state_dir or paths.state_dir()
    return root


def render_invite(invite: PairingInvite, qr: bool = True) -> str:
    """The pairing code as a terminal QR code plus its text (what the admin page shows)."""
    text = invite.encode()
    if not qr:
        return text
    buf = io.StringIO()
    segno.make(text, error="m").terminal(out=buf, compact=True, border=2)
    return buf.getvalue() + text


def _print_invite(state: BoxState, ttl: int, qr: bool = True) -> None:
    ident = state.identity
    invite = state.registry.create_invite(ident.box_id, ident.key_hash, time.time(), ttl=ttl)
    print(render_invite(invite, qr), flush=True)


def _run_init(args: argparse.Namespace) -> int:
    state = init_state(_root(args))
    try:
        print(f"box id:       {state.identity.box_id_hex}")
        print(f"box key hash: {state.identity.key_hash.hex()}")
        print(f"state:        {state.root}")
    finally:
        state.close()
    return 0


def _run_invite(args: argparse.Namespace) -> int:
    state = open_state(_root(args))
    try:
        _print_invite(state, args.ttl, qr=not args.no_qr)
    finally:
        state.close()
    return 0


def _run_phones(args: argparse.Namespace) -> int:
    state = open_state(_root(args))
    try:
        for ph in state.store.phones.list_phones(include_revoked=True):
            status = "revoked" if ph.revoked else "enrolled"
            seen = (
                time.strftime("%Y-%m-%d %H:%M", time.gmtime(ph.last_seen_at)) if ph.last_seen_at else "never"
            )
            print(f"{ph.phone_id}  {status:8}  last seen {seen}")
    finally:
        state.close()
    return 0


class UnknownPhoneError(EdgeboxError):
    code = "phone_unknown"


def _run_revoke(args: argparse.Namespace) -> int:
    state = open_state(_root(args))
    try:
        if not state.registry.revoke(args.phone_id):
            raise UnknownPhoneError(f"no enrolled phone {args.phone_id}")
        print(f"revoked {args.phone_id}")
    finally:
        state.close()
    return 0


async def _listener(args: argparse.Namespace, state: BoxState) -> LinkListener:
    if args.socket:
        from edgebox.transport.unix import SeqpacketListener

        return SeqpacketListener(args.socket)
    from edgebox.ble.layout import ble_name
    from edgebox.ble.links import box_listener
    from edgebox.session.handshake import PROTOCOL_VERSION

    ident = state.identity
    peripheral = box_listener(
        ident.box_id_hex,
        ident.key_hash,
        PROTOCOL_VERSION,
        adapter=args.adapter or "hci0",
        name=ble_name(ident.box_id_hex),
        advertisement_instances=args.adv_instances,
    )
    await peripheral.start()
    return peripheral


def _run_serve(args: argparse.Namespace) -> int:
    root = _root(args)
    # First start initialises the state (on the Pi the key is the first-boot credential); later
    # starts only open it, so a missing or wrong key is a typed error, never a new empty store.
    state = open_state(root) if (root / "identity.json").exists() else init_state(root)
    _print_invite(state, args.ttl)

    responder: Responder = EchoResponder()
    uplink: GatewayResponder | None = None
    if args.gateway:
        if not (args.gateway_ca and args.cert and args.key):
            raise ConfigError("--gateway needs --gateway-ca, --cert and --key")
        uplink = GatewayResponder(
            UplinkConfig(args.gateway, args.gateway_ca, args.cert, args.key, args.model)
        )
        responder = uplink

    async def go() -> None:
        listener = await _listener(args, state)
        try:
            await BoxServer(state.identity, state.registry, responder).serve(listener)
        finally:
            await listener.close()
            if uplink is not None:
                await uplink.close()

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(go())
    finally:
        state.close()
    return 0
