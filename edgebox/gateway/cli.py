"""`edgebox gateway`: run one gateway replica.

Theory of operation: the embedded default config (edgebox.gateway.config) runs a single machine with
in-memory quotas and the sqlite revocation store; `--redis URL` shares quotas and revocations between
replicas. If the PKI directory has no device CA yet, one is created together with a server certificate
for localhost, so `edgebox gateway` starts with no setup at all (production operators run
`edgebox pki init` themselves). Runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

from edgebox.gateway.config import load_config
from edgebox.gateway.secret import load_upstream_key
from edgebox.gateway.server import Gateway
from edgebox.log import get_logger
from edgebox.pki.ca import DeviceCA

log = get_logger("edgebox.gateway.cli")


async def _serve(args: argparse.Namespace) -> int:
    cfg = load_config(
        args.config,
        redis_url=args.redis,
        listen_host=args.host,
        listen_port=args.port,
        pki_dir=args.pki_dir,
        upstream_url=args.upstream_url,
        upstream_key_file=args.upstream_key_file,
        audit_file=args.audit_file,
    )
    pki = Path(cfg.pki_dir)
    if not (pki / "ca.key").exists() and not (pki / "ca.crt").exists():
        ca = DeviceCA.create(pki)
        ca.write_server_cert(["localhost", "127.0.0.1", "::1"])
        log.warning("pki_initialised", pki_dir=str(pki))
    key = load_upstream_key(cfg.upstream_key_file, cfg.upstream_key_credential)
    if key is None:
        log.warning("no_upstream_key", hint="set upstream_key_file or a systemd credential 'upstream-key'")
    gw = Gateway(cfg, upstream_key=key)
    await gw.start()
    if args.port_file:
        Path(args.port_file).write_text(str(gw.port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await gw.stop()
    return 0


def _run(args: argparse.Namespace) -> int:
    return asyncio.run(_serve(args))


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("gateway", help="run the mTLS cloud AI gateway")
    p.add_argument("--config", type=Path, default=None, help="TOML file overriding the embedded defaults")
    p.add_argument("--redis", default=None, metavar="URL", help="share quotas and revocations (replicas)")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--pki-dir", default=None)
    p.add_argument("--upstream-url", default=None)
    p.add_argument("--upstream-key-file", default=None)
    p.add_argument("--audit-file", default=None, help="audit JSON lines file ('-' = stderr)")
    p.add_argument("--port-file", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_run)
