"""`edgebox pki …`: the operator's CA tooling (init, issue, server-cert, list, revoke, reinstate,
enrol-token, signer).

Theory of operation: thin argparse wrappers over `DeviceCA` and the `CertStore`. The CA directory
defaults to $EDGEBOX_PKI_DIR or ./var/pki; `--redis URL` points revocations and the issued list at the
store the gateway replicas share (without it, the sqlite file next to the CA is used).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

from edgebox.pki.ca import DeviceCA, check_box_id
from edgebox.pki.store import open_store


def default_pki_dir() -> Path:
    return Path(os.environ.get("EDGEBOX_PKI_DIR", "var/pki"))


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dir", type=Path, default=None, help="CA directory (default $EDGEBOX_PKI_DIR or ./var/pki)"
    )
    p.add_argument("--redis", default=None, metavar="URL", help="shared revocation store (gateway replicas)")


def _dir(args: argparse.Namespace) -> Path:
    return args.dir if args.dir is not None else default_pki_dir()


def _init(args: argparse.Namespace) -> int:
    ca = DeviceCA.create(_dir(args), args.name)
    cert, _ = ca.write_server_cert(args.server_name)
    print(json.dumps({"ca": str(ca.cert_path), "server_cert": str(cert)}))
    return 0


def _server_cert(args: argparse.Namespace) -> int:
    cert, key = DeviceCA.load(_dir(args)).write_server_cert(args.name, days=args.days)
    print(json.dumps({"server_cert": str(cert), "server_key": str(key)}))
    return 0


async def _issue_async(args: argparse.Namespace) -> int:
    ca = DeviceCA.load(_dir(args))
    csr = sys.stdin.buffer.read() if args.csr == "-" else Path(args.csr).read_bytes()
    issued = ca.issue_box(csr, check_box_id(args.box_id), lifetime=dt.timedelta(hours=args.hours))
    store = open_store(_dir(args), args.redis)
    try:
        await store.record_issued(issued.serial, issued.box_id, issued.not_after)
    finally:
        await store.close()
    if args.out:
        Path(args.out).write_bytes(issued.pem)
    else:
        sys.stdout.buffer.write(issued.pem)
    print(
        json.dumps(
            {"box_id": issued.box_id, "serial": issued.serial, "not_after": issued.not_after.isoformat()}
        ),
        file=sys.stderr,
    )
    return 0


async def _list_async(args: argparse.Namespace) -> int:
    store = open_store(_dir(args), args.redis)
    try:
        certs = await store.list_certs()
        revoked = await store.list_revoked()
    finally:
        await store.close()
    out: dict[str, Any] = {
        "certs": [
            {"serial": c.serial, "box_id": c.box_id, "not_after": c.not_after, "revoked": c.revoked}
            for c in certs
        ],
        "revoked": [{"subject": r.subject, "reason": r.reason, "at": r.at} for r in revoked],
    }
    print(json.dumps(out, indent=2))
    return 0


async def _revoke_async(args: argparse.Namespace) -> int:
    store = open_store(_dir(args), args.redis)
    try:
        if args.serial:
            await store.revoke_serial(args.serial, args.reason)
        else:
            await store.revoke_box(check_box_id(args.box_id), args.reason)
    finally:
        await store.close()
    return 0


async def _reinstate_async(args: argparse.Namespace) -> int:
    box_id = check_box_id(args.box_id)
    store = open_store(_dir(args), args.redis)
    try:
        found = await store.reinstate_box(box_id)
    finally:
        await store.close()
    if args.redis:  # the replicas' anomaly watch starts again from zero for this box
        from edgebox.gateway.state import RedisDeviceState
        from edgebox.redisconn import connect

        state = RedisDeviceState(connect(args.redis, max_connections=2))
        try:
            await state.reset(box_id)
        finally:
            await state.close()
    return 0 if found else 1


async def _enrol_token_async(args: argparse.Namespace) -> int:
    from edgebox.pki.enrol import MAX_TTL_S, new_token, token_digest

    box_id = check_box_id(args.box_id)
    if not 30 <= args.ttl <= MAX_TTL_S:
        from edgebox.pki.ca import PkiError

        raise PkiError(f"--ttl must be between 30 and {MAX_TTL_S:g} seconds", code="usage")
    token = new_token()
    store = open_store(_dir(args), args.redis)
    try:
        await store.add_enrol_token(token_digest(token), box_id, args.ttl)
    finally:
        await store.close()
    print(token)  # the only place the token ever appears; the store keeps its digest
    return 0


async def _signer_async(args: argparse.Namespace) -> int:
    import signal

    from edgebox.pki.signer import SigningService

    service = SigningService(DeviceCA.load(_dir(args)), Path(args.socket))
    await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await service.stop()
    return 0


def register(subparsers: Any) -> None:
    pki = subparsers.add_parser("pki", help="device CA: issue, list and revoke box certificates")
    sub = pki.add_subparsers(dest="pki_command", required=True, metavar="ACTION")

    p = sub.add_parser("init", help="create the device CA and a gateway server certificate")
    _store_args(p)
    p.add_argument("--name", default="edgebox device CA")
    p.add_argument(
        "--server-name",
        action="append",
        default=None,
        help="DNS name / IP of the gateway (repeatable; default localhost, 127.0.0.1, ::1)",
    )
    p.set_defaults(func=lambda a: _init(_with_server_default(a)))

    p = sub.add_parser("server-cert", help="(re)issue the gateway's TLS server certificate")
    _store_args(p)
    p.add_argument("name", nargs="+", help="DNS names / IP addresses")
    p.add_argument("--days", type=int, default=90)
    p.set_defaults(func=_server_cert)

    p = sub.add_parser("issue", help="issue a box certificate from a CSR")
    _store_args(p)
    p.add_argument("--box-id", required=True)
    p.add_argument("--csr", required=True, help="CSR PEM file, or - for stdin")
    p.add_argument("--out", default=None, help="write the certificate here (default stdout)")
    p.add_argument("--hours", type=float, default=24.0, help="lifetime (default 24 h)")
    p.set_defaults(func=lambda a: asyncio.run(_issue_async(a)))

    p = sub.add_parser("list", help="list issued certificates and revocations")
    _store_args(p)
    p.set_defaults(func=lambda a: asyncio.run(_list_async(a)))

    p = sub.add_parser("revoke", help="revoke a box (all its certificates) or one serial")
    _store_args(p)
    p.add_argument("box_id", nargs="?", default=None)
    p.add_argument("--serial", default=None, help="revoke only this certificate serial (hex)")
    p.add_argument("--reason", default="operator")
    p.set_defaults(func=lambda a: asyncio.run(_revoke_async(_need_target(a))))

    p = sub.add_parser("reinstate", help="lift a box revocation (and restart its anomaly watch)")
    _store_args(p)
    p.add_argument("box_id")
    p.set_defaults(func=lambda a: asyncio.run(_reinstate_async(a)))

    p = sub.add_parser("enrol-token", help="print a one-time enrolment token for a new box")
    _store_args(p)
    p.add_argument("--box-id", required=True)
    p.add_argument("--ttl", type=float, default=900.0, help="seconds until the token expires (default 900)")
    p.set_defaults(func=lambda a: asyncio.run(_enrol_token_async(a)))

    p = sub.add_parser("signer", help="run the signing service (the only holder of the CA key)")
    _store_args(p)
    p.add_argument("--socket", required=True, help="Unix socket path the gateway replicas use")
    p.set_defaults(func=lambda a: asyncio.run(_signer_async(a)))


def _with_server_default(args: argparse.Namespace) -> argparse.Namespace:
    if not args.server_name:
        args.server_name = ["localhost", "127.0.0.1", "::1"]
    return args


def _need_target(args: argparse.Namespace) -> argparse.Namespace:
    from edgebox.pki.ca import PkiError

    if not args.box_id and not args.serial:
        raise PkiError("give a box id or --serial", code="usage")
    return args
