"""`edgebox box ...`: run the box, and operate a running one.

edgebox box run --config /etc/edgebox/box.toml     the daemon (what the systemd unit runs)
edgebox box run --socket PATH | --ble | --websocket HOST:PORT [--gateway URL --gateway-ca F --cert F --key F]
                                                   the same daemon, configured by development flags
edgebox box config --check FILE | --show           validate a config file / print the effective one
edgebox box init                                   development: identity, key file and store
edgebox box enroll --gateway URL --ca FILE --token TOKEN
                                                   get the box's first gateway certificate
edgebox box status | invite | phones | rename ID NAME | revoke ID | log
edgebox box docs add FILE... | docs list | docs remove ID|SOURCE
edgebox box admin ...                              the admin web page (see edgebox/admin/cli.py)

Every command reads one config file: `--config FILE`, else `$EDGEBOX_BOX_CONFIG`, else the installed
`/etc/edgebox/box.toml` when it exists (so on the flashed image `edgebox box phones` needs no flags),
else none: the development box in `--state-dir` / `$EDGEBOX_STATE_DIR` / `./var/box` with key files.
Operator commands talk to the running daemon over the control socket that config names
(`[box] control_socket`, peer-credential checked): on a real box only the daemon holds the store key
(a sealed credential).
When no daemon runs, they open the store directly with the same key sources the daemon uses
(development key files, or `$CREDENTIALS_DIRECTORY`, e.g. under `systemd-run -p LoadCredential...`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import segno

from edgebox import paths
from edgebox.box.config import (
    CONFIG_ENV,
    BoxConfig,
    default_config_path,
    load_box_config,
    to_toml,
    with_overrides,
)
from edgebox.box.control import UnknownPhoneError
from edgebox.box.control_socket import ControlUnavailableError, call, encode_file
from edgebox.box.state import BoxState, init_state, open_state
from edgebox.session.invite import PairingInvite

__all__ = ["UnknownPhoneError", "register", "render_invite"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("box", help="the branch box: run it, pair phones, documents, certificates")
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="a development box's state (no config file); default: [box] state_dir of the config, "
        "else $EDGEBOX_STATE_DIR or ./var/box",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"the box config file (TOML, docs/box.md); default: ${CONFIG_ENV}, else "
        "/etc/edgebox/box.toml when it exists, else the development box in --state-dir",
    )
    bsub = p.add_subparsers(dest="box_command", required=True, metavar="ACTION")

    bsub.add_parser("init", help="development: create identity, key file and store").set_defaults(
        func=_run_init
    )

    cfg = bsub.add_parser("config", help="validate or show the configuration")
    cfg.add_argument("--check", type=Path, help="validate this file and exit")
    cfg.add_argument("--show", action="store_true", help="print the effective configuration as TOML")
    cfg.set_defaults(func=_run_config)

    enr = bsub.add_parser("enroll", help="get the box's first gateway certificate with a one-time token")
    enr.add_argument("--gateway", help="gateway URL (default: [gateway] url)")
    enr.add_argument("--ca", type=Path, help="device CA certificate (default: [gateway] ca_file)")
    enr.add_argument("--token", required=True, help="the one-time token from `edgebox pki enrol-token`")
    enr.set_defaults(func=_run_enroll)

    bsub.add_parser("status", help="the running box's status (JSON)").set_defaults(func=_run_status)
    inv = bsub.add_parser("invite", help="make a single-use pairing code")
    inv.add_argument(
        "--ttl", type=int, default=None, help="lifetime in seconds (default: [box] invite_ttl_s)"
    )
    inv.add_argument("--no-qr", action="store_true")
    inv.set_defaults(func=_run_invite)
    bsub.add_parser("phones", help="list enrolled phones").set_defaults(func=_run_phones)
    ren = bsub.add_parser("rename", help="give a phone a display name")
    ren.add_argument("phone_id")
    ren.add_argument("name")
    ren.set_defaults(func=_run_rename)
    rev = bsub.add_parser("revoke", help="revoke a phone (its live session is dropped at once)")
    rev.add_argument("phone_id")
    rev.set_defaults(func=_run_revoke)
    lg = bsub.add_parser("log", help="recent prompt-log decisions (no text unless configured)")
    lg.add_argument("--limit", type=int, default=20)
    lg.add_argument("--phone", default=None)
    lg.set_defaults(func=_run_log)

    docs = bsub.add_parser("docs", help="branch documents for local answers")
    dsub = docs.add_subparsers(dest="docs_command", required=True, metavar="ACTION")
    add = dsub.add_parser("add", help="add .txt, .md or .pdf files (replaces a file added before)")
    add.add_argument("files", nargs="+", type=Path)
    add.set_defaults(func=_run_docs_add)
    dsub.add_parser("list", help="list documents").set_defaults(func=_run_docs_list)
    rm = dsub.add_parser("remove", help="remove a document by id or source")
    rm.add_argument("ref")
    rm.set_defaults(func=_run_docs_remove)

    run = bsub.add_parser("run", help="run the box daemon")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--socket", type=Path, help="development: serve phones on a Unix socket (no BLE)")
    where.add_argument("--ble", action="store_true", help="development: BLE GATT peripheral through BlueZ")
    where.add_argument(
        "--websocket",
        metavar="HOST:PORT",
        help="development WebSocket link for the web phone (ws://HOST:PORT/link; never in production)",
    )
    run.add_argument("--adapter", default=None, help="Bluetooth adapter for --ble (default: hci0)")
    run.add_argument("--adv-instances", type=int, default=None, help=argparse.SUPPRESS)
    run.add_argument("--ttl", type=int, default=None, help="pairing code lifetime, seconds")
    up = run.add_argument_group("uplink (development flags; the unit uses [gateway] in the config)")
    up.add_argument("--gateway", default=None, help="gateway URL, e.g. https://gw.example:8443")
    up.add_argument("--gateway-ca", type=Path, help="device CA certificate (pins the gateway)")
    up.add_argument("--cert", type=Path, help="this box's client certificate (PEM)")
    up.add_argument("--key", type=Path, help="its private key (PEM, 0600); default: the box identity key")
    up.add_argument("--model", default=None, help="model name sent to the gateway")
    run.set_defaults(func=_run_serve)
    from edgebox.admin.cli import register as register_admin  # `edgebox box admin ...` (issue 13)

    register_admin(bsub)


# -- configuration --------------------------------------------------------------------------


def config_path(args: argparse.Namespace) -> Path | None:
    """The config file this command uses: `--config`, `$EDGEBOX_BOX_CONFIG`, the installed
    /etc/edgebox/box.toml (a real box), or None: a development box (`--state-dir`, key files).
    An explicit `--state-dir` without a config names a development box and skips the installed file."""
    if args.config is not None:
        return Path(args.config)
    if args.state_dir is not None and not os.environ.get(CONFIG_ENV):
        return None
    return default_config_path()


def _config(args: argparse.Namespace) -> BoxConfig:
    path = config_path(args)
    cfg = load_box_config(path) if path is not None else BoxConfig()
    state_dir = args.state_dir
    if state_dir is None and path is None:
        state_dir = paths.state_dir()
    if state_dir is not None:
        cfg = with_overrides(cfg, box={"state_dir": str(state_dir)})
    if path is None:  # no config file: a development box (key files allowed)
        cfg = with_overrides(cfg, box={"dev_key_files": True})
    return cfg


def _dev_overrides(args: argparse.Namespace, cfg: BoxConfig, path: Path | None) -> BoxConfig:
    dev_flags = bool(args.socket or args.ble or args.gateway or args.websocket)
    if path is None and not dev_flags:
        from edgebox.errors import ConfigError

        raise ConfigError("box run needs --config FILE (or the development flags --socket / --ble)")
    over: dict[str, dict[str, Any]] = {"box": {}, "ble": {}, "gateway": {}, "dev": {}}
    if args.socket:
        over["dev"]["socket"] = str(args.socket)
        over["ble"]["enabled"] = False
    if args.ble:
        over["ble"]["enabled"] = True
    if args.websocket:
        from edgebox.errors import ConfigError

        host, _, port = args.websocket.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError("--websocket takes HOST:PORT, e.g. 127.0.0.1:8765")
        over["dev"].update(websocket=True, websocket_listen=host, websocket_port=int(port))
        over["ble"]["enabled"] = False
    if args.adapter:
        over["ble"]["adapter"] = args.adapter
    if args.adv_instances:
        over["ble"]["adv_instances"] = args.adv_instances
    if args.ttl:
        over["box"]["invite_ttl_s"] = args.ttl
    if dev_flags and path is None:
        over["box"]["print_invite"] = True
        over["dev"]["echo"] = not args.gateway
    if args.gateway:
        from edgebox.errors import ConfigError

        if not (args.gateway_ca and args.cert):
            raise ConfigError(
                "--gateway needs --gateway-ca and --cert (and --key unless the identity key signed it)"
            )
        over["gateway"].update(url=args.gateway, ca_file=str(args.gateway_ca), cert_file=str(args.cert))
        if args.key:
            over["gateway"]["key_file"] = str(args.key)
    if args.model:
        over["gateway"]["model"] = args.model
    return with_overrides(cfg, **over)


def _run_config(args: argparse.Namespace) -> int:
    if args.check:
        load_box_config(args.check)
        print(f"{args.check}: valid")
        return 0
    print(to_toml(_config(args)), end="")
    return 0


# -- rendering ------------------------------------------------------------------------------


def render_invite(invite: PairingInvite, qr: bool = True) -> str:
    """The pairing code as a terminal QR code plus its text (what the admin page shows)."""
    return render_code(invite.encode(), qr)


def render_code(text: str, qr: bool = True) -> str:
    if not qr:
        return text
    buf = io.StringIO()
    segno.make(text, error="m").terminal(out=buf, compact=True, border=2)
    return buf.getvalue() + text


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts)) if ts else "never"


# -- talking to the daemon (or, when it is not running, to the store) -----------------------


def _control(args: argparse.Namespace, op: str, payload: dict[str, Any] | None = None, **kw: Any) -> Any:
    cfg = _config(args)
    return asyncio.run(call(cfg.control_socket_path, op, payload, **kw))


def _with_store(args: argparse.Namespace) -> BoxState:
    cfg = _config(args)
    return open_state(cfg.state_dir, dev=cfg.box.dev_key_files)


def _run_init(args: argparse.Namespace) -> int:
    cfg = _config(args)
    state = init_state(cfg.state_dir, dev=True)
    try:
        print(f"box id:       {state.identity.box_id_hex}")
        print(f"box key hash: {state.identity.key_hash.hex()}")
        print(f"state:        {state.root}")
    finally:
        state.close()
    return 0


def _run_status(args: argparse.Namespace) -> int:
    print(json.dumps(_control(args, "status"), indent=2, sort_keys=True))
    return 0


def _run_invite(args: argparse.Namespace) -> int:
    try:
        code = _control(args, "invite", {"ttl": args.ttl})["code"]
    except ControlUnavailableError:
        ttl = args.ttl if args.ttl is not None else _config(args).box.invite_ttl_s
        state = _with_store(args)
        try:
            ident = state.identity
            code = state.registry.create_invite(ident.box_id, ident.key_hash, time.time(), ttl=ttl).encode()
        finally:
            state.close()
    print(render_code(code, qr=not args.no_qr), flush=True)
    return 0


def _run_phones(args: argparse.Namespace) -> int:
    try:
        phones = _control(args, "phones")
    except ControlUnavailableError:
        state = _with_store(args)
        try:
            phones = [
                {
                    "phone_id": ph.phone_id,
                    "name": ph.name,
                    "status": "revoked" if ph.revoked else "enrolled",
                    "last_seen_at": ph.last_seen_at,
                    "connected": False,
                }
                for ph in state.store.phones.list_phones(include_revoked=True)
            ]
        finally:
            state.close()
    for ph in phones:
        live = "  connected" if ph.get("connected") else ""
        print(
            f"{ph['phone_id']}  {ph['status']:9}  last seen {_when(ph['last_seen_at'])}  {ph['name']}{live}"
        )
    return 0


def _run_rename(args: argparse.Namespace) -> int:
    _control(args, "rename", {"phone_id": args.phone_id, "name": args.name})
    print(f"renamed {args.phone_id}")
    return 0


def _run_revoke(args: argparse.Namespace) -> int:
    try:
        dropped = _control(args, "revoke", {"phone_id": args.phone_id})["dropped_sessions"]
    except ControlUnavailableError:
        state = _with_store(args)
        try:
            if not state.registry.revoke(args.phone_id):
                raise UnknownPhoneError(f"no enrolled phone {args.phone_id}") from None
            dropped = 0
        finally:
            state.close()
    print(f"revoked {args.phone_id}" + (f" (dropped {dropped} live session(s))" if dropped else ""))
    return 0


def _run_log(args: argparse.Namespace) -> int:
    for row in _control(args, "log", {"limit": args.limit, "phone_id": args.phone}):
        t = ", ".join(f"{k}={v}" for k, v in sorted(row["timings_ms"].items()))
        phone = row["phone_id"] or "-"
        print(f"{_when(row['created_at'])}  {row['trace_id'][:32]}  {phone:16}  {row['decision']:16}  {t}")
    return 0


class _Bar:
    """A progress bar on stderr (a line per file when stderr is not a terminal)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self._last = ""

    def __call__(self, doc: dict[str, Any]) -> None:
        done, total, name = int(doc["done"]), max(1, int(doc["total"])), Path(str(doc["file"])).name
        width = 30
        fill = width * done // total
        line = f"{name[:40]:40} [{'#' * fill}{'.' * (width - fill)}] {done}/{total} chunks"
        if self.tty:
            sys.stderr.write("\r" + line)
            if done >= total:
                sys.stderr.write("\n")
        elif done >= total and line != self._last:
            sys.stderr.write(line + "\n")
        self._last = line
        sys.stderr.flush()


def _run_docs_add(args: argparse.Namespace) -> int:
    from edgebox.box.library import DocumentError

    for f in args.files:
        if not f.is_file():
            raise DocumentError(f"{f} is not a file")
    payload = {"files": [encode_file(f) for f in args.files]}
    docs = _control(args, "docs_add", payload, on_progress=_Bar())
    for d in docs:
        print(f"{d['doc_id']:5}  {d['chunks']:5} chunks  {d['title']}  ({d['source']})")
    return 0


def _run_docs_list(args: argparse.Namespace) -> int:
    for d in _control(args, "docs_list"):
        when = _when(d["created_at"])
        print(f"{d['doc_id']:5}  {d['chunks']:5} chunks  {when}  {d['title']}  ({d['source']})")
    return 0


def _run_docs_remove(args: argparse.Namespace) -> int:
    d = _control(args, "docs_remove", {"ref": args.ref})
    print(f"removed {d['doc_id']} {d['title']} ({d['chunks']} chunks)")
    return 0


def _run_enroll(args: argparse.Namespace) -> int:
    from edgebox.box.renewal import enroll
    from edgebox.errors import ConfigError

    cfg = _config(args)
    url = args.gateway or cfg.gateway.url
    ca = args.ca or (Path(cfg.gateway.ca_file) if cfg.gateway.ca_file else None)
    if not url or ca is None:
        raise ConfigError("enroll needs --gateway and --ca (or [gateway] url and ca_file in the config)")
    try:
        result = _control(args, "enroll", {"gateway": url, "ca": str(ca), "token": args.token})
        print(f"enrolled: certificate valid until {result['not_after']} (installed in the running box)")
        return 0
    except ControlUnavailableError:
        pass
    state = _with_store(args)
    try:
        info = asyncio.run(enroll(url, ca, args.token, state.identity, cfg.cert_path))
    finally:
        state.close()
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info.not_after))
    print(f"enrolled: certificate {cfg.cert_path} valid until {until}")
    return 0


# -- the daemon -----------------------------------------------------------------------------


def _run_serve(args: argparse.Namespace) -> int:
    from edgebox.box.daemon import BoxDaemon

    path = config_path(args)
    cfg = _dev_overrides(args, _config(args), path)
    daemon = BoxDaemon(cfg, config_path=path)

    async def go() -> None:
        if cfg.box.print_invite:
            ready = asyncio.Event()

            async def show() -> None:
                await ready.wait()
                invite = await daemon.control.create_invite()
                if daemon.websocket_url:
                    print(f"web phone development link: {daemon.websocket_url}", flush=True)
                print(render_invite(invite), flush=True)

            orig = daemon.notifier.ready

            def on_ready(status: str = "") -> bool:
                ready.set()
                return orig(status)

            daemon.notifier.ready = on_ready  # type: ignore[method-assign]
            task = asyncio.create_task(show())
            try:
                await daemon.run()
            finally:
                task.cancel()
        else:
            await daemon.run()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())
    return 0
