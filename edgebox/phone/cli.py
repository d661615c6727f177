"""`edgebox phone ...`: the reference phone on the command line.

edgebox phone [--keystore F] [--socket PATH | --ble [--adapter hciN]] pair EDGEBOX1:...
edgebox phone [...] ask "question" [--box ID]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from edgebox import paths
from edgebox.errors import EdgeboxError
from edgebox.phone import client
from edgebox.phone.keystore import PhoneKeystore
from edgebox.session.config import SessionConfig
from edgebox.session.invite import PairingInvite
from edgebox.transport.base import DatagramLink


class TransportChoiceError(EdgeboxError):
    code = "transport_missing"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("phone", help="reference phone client: pair with a box, ask prompts")
    p.add_argument("--keystore", type=Path, default=None, help="key file (default: XDG data dir)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--socket", type=Path, help="box's Unix socket (development transport)")
    where.add_argument("--ble", action="store_true", help="reach the box over Bluetooth LE (bleak)")
    p.add_argument("--adapter", default=None, help="Bluetooth adapter for --ble, e.g. hci1")
    p.add_argument("--timeout", type=float, default=30.0)
    psub = p.add_subparsers(dest="phone_command", required=True, metavar="ACTION")

    pair = psub.add_parser("pair", help="pair using the code from the box's QR code")
    pair.add_argument("payload", help="the EDGEBOX1:... text of the QR code")
    pair.set_defaults(func=_run_pair)

    ask = psub.add_parser("ask", help="ask a paired box a question (streams the answer)")
    ask.add_argument("text")
    ask.add_argument("--box", default=None, help="box id (needed when paired with several)")
    ask.set_defaults(func=_run_ask)


async def _open_link(args: argparse.Namespace, box_id: str | None) -> DatagramLink:
    if args.socket:
        from edgebox.transport import unix

        return await unix.connect(args.socket)
    if args.ble:
        from edgebox.ble.layout import ble_name
        from edgebox.ble.links import phone_link

        name = ble_name(box_id) if box_id else None
        return await phone_link(
            adapter=args.adapter,
            box_id=box_id,
            name=name,
            scan_timeout=args.timeout,
            connect_timeout=args.timeout,
        )
    raise TransportChoiceError("choose a transport: --socket PATH or --ble")


def _config(args: argparse.Namespace) -> SessionConfig:
    return SessionConfig(handshake_timeout_s=float(args.timeout))


def _keystore(args: argparse.Namespace) -> PhoneKeystore:
    return PhoneKeystore.load_or_create(args.keystore or paths.phone_keystore())


def _run_pair(args: argparse.Namespace) -> int:
    invite = PairingInvite.decode(args.payload)
    keystore = _keystore(args)

    async def go() -> None:
        link = await _open_link(args, invite.box_id.hex())
        session = await client.pair(link, keystore, invite, config=_config(args))
        await session.close()

    asyncio.run(go())
    print(f"paired with box {invite.box_id.hex()}")
    return 0


def _run_ask(args: argparse.Namespace) -> int:
    keystore = _keystore(args)
    box = keystore.box(args.box)

    async def go() -> None:
        link = await _open_link(args, box.box_id)
        async with await client.connect(link, keystore, box, config=_config(args)) as session:
            async for item in session.ask_stream(args.text):
                if isinstance(item, str):
                    sys.stdout.write(item)
                    sys.stdout.flush()
            sys.stdout.write("\n")

    asyncio.run(go())
    return 0
