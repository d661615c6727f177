"""`edgebox box admin ...`: the admin page's certificate fingerprint, set-up codes, a development server.

edgebox box admin fingerprint            SHA-256 fingerprint of the admin page's certificate
edgebox box admin setup-code [--ttl S]   a one-time code for the first set-up (or a password reset)
edgebox box admin serve [--port N] [--socket PATH]
                                         the admin page over the state directory (development;
                                         with --socket also the phone session server)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path

from edgebox import paths
from edgebox.admin.library import Embed
from edgebox.admin.records import SETUP_CODE_TTL_S, SetupCodes
from edgebox.admin.service import DEFAULT_BOOT_SETUP_FILE, AdminService, ListenConfig, admin_dir
from edgebox.admin.tls import ensure_certificate


def register(bsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = bsub.add_parser("admin", help="the branch admin web page: fingerprint, set-up code, serve")
    asub = p.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    asub.add_parser("fingerprint", help="print the admin certificate's SHA-256 fingerprint").set_defaults(
        func=_run_fingerprint
    )
    code = asub.add_parser("setup-code", help="print a one-time set-up code for the admin page")
    code.add_argument("--ttl", type=int, default=SETUP_CODE_TTL_S, help="lifetime in seconds")
    code.set_defaults(func=_run_setup_code)
    serve = asub.add_parser("serve", help="serve the admin page (development)")
    serve.add_argument("--listen", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument("--socket", type=Path, default=None, help="also serve phones on this Unix socket")
    serve.add_argument("--config", type=Path, default=None, help="TOML config file the settings page edits")
    serve.add_argument("--boot-setup-file", type=Path, default=DEFAULT_BOOT_SETUP_FILE)
    serve.set_defaults(func=_run_serve)


def _root(args: argparse.Namespace) -> Path:
    root: Path = args.state_dir or paths.state_dir()
    return root


def _installed_box(args: argparse.Namespace) -> Path | None:
    """The control socket of the box this command is for, when it is a configured (installed) box.

    On a real box the admin page's files belong to the daemon (its user, its state directory): the
    commands ask the running daemon over its control socket rather than touch them as root."""
    from edgebox.box.cli import config_path
    from edgebox.box.config import load_box_config

    path = config_path(args)
    return load_box_config(path).control_socket_path if path is not None else None


def _run_fingerprint(args: argparse.Namespace) -> int:
    sock = _installed_box(args)
    if sock is not None:
        from edgebox.box.control_socket import call

        fingerprint = asyncio.run(call(sock, "admin_fingerprint"))["fingerprint"]
    else:
        fingerprint = ensure_certificate(admin_dir(_root(args))).fingerprint
    print(f"SHA-256 {fingerprint}")
    return 0


def _run_setup_code(args: argparse.Namespace) -> int:
    sock = _installed_box(args)
    if sock is not None:
        from edgebox.box.control_socket import call

        code = asyncio.run(call(sock, "admin_setup_code", {"ttl": args.ttl}))["code"]
    else:
        code = SetupCodes(admin_dir(_root(args))).create(args.ttl)
    minutes = max(1, args.ttl // 60)
    print(f"admin set-up code (single use, valid {minutes} min): {code}")
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    from edgebox.admin.library import LibraryBackend
    from edgebox.box.responder import EchoResponder
    from edgebox.box.server import BoxServer
    from edgebox.box.state import init_state, open_state

    root = _root(args)
    state = open_state(root) if (root / "identity.json").exists() else init_state(root)
    config_path: Path = args.config or root / "box.toml"

    async def go() -> None:
        server = BoxServer(state.identity, state.registry, EchoResponder())
        backend = LibraryBackend(
            store=state.store,
            identity=state.identity,
            registry=state.registry,
            server=server,
            state_dir=root,
            config_path=config_path,
            embed=_local_embedder(),
            models_dir=_models_dir(),
        )
        service = AdminService(backend, state.store.db, root, boot_setup_file=args.boot_setup_file)
        port = await service.start(ListenConfig(args.listen, args.port))
        print(
            f"admin page on port {port}, socket activated: {service.socket_activated} "
            f"(SHA-256 {service.certificate.fingerprint})",
            flush=True,
        )
        tasks = []
        if args.socket:
            from edgebox.transport.unix import SeqpacketListener

            listener = SeqpacketListener(args.socket)
            tasks.append(asyncio.create_task(server.serve(listener)))
        try:
            await asyncio.Event().wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await service.stop()

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(go())
    finally:
        state.close()
    return 0


def _models_dir() -> Path | None:
    from edgebox.models.config import ModelsConfig

    return ModelsConfig.from_env().models_dir


def _local_embedder() -> Embed | None:
    """The MiniLM embedder's `embed`, or None when the models are not installed."""
    from edgebox.models.embedder import Embedder
    from edgebox.models.errors import ModelError

    try:
        return Embedder().embed
    except ModelError:
        return None
