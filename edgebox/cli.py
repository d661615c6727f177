"""The `edgebox` command line.

Theory of operation: each capability folder owns its own subcommands in an `edgebox/<area>/cli.py`
module exposing `register(subparsers)`; this module only wires them together, configures logging
once, and maps typed `EdgeboxError`s to a one-line message and exit code 2 (never a traceback, and
never secret material: error messages are written to be safe to print).

Benchmarks follow the same pattern: `edgebox bench NAME --json` runs `edgebox.<NAME>.bench.run(args)`,
which returns a dict printed as one JSON object.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from edgebox import __version__
from edgebox.errors import EdgeboxError
from edgebox.log import configure_logging

# Modules that contribute subcommands. A module listed here but not yet present is skipped.
COMMAND_MODULES = (
    "edgebox.demo",
    "edgebox.phone.cli",
    "edgebox.box.cli",
    "edgebox.gateway.cli",
    "edgebox.pki.cli",
    "edgebox.store.cli",
    "edgebox.models.cli",
    "edgebox.telemetry.cli",
    "edgebox.provision.cli",
)

# `edgebox bench NAME` -> module whose run(args) returns the JSON-able result.
BENCHES = {
    "session": "edgebox.session.bench",
    "ble": "bench.ble",  # a checkout's bench/ (box + phone together: not part of edgebox.ble)
    "gateway": "edgebox.gateway.bench",
    "store": "edgebox.store.bench",
    "models": "edgebox.models.bench",
    "box": "edgebox.box.bench",
    "phone_web": "edgebox.phone_web.bench",
}


def _optional_import(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            return None
        raise


def _bench(args: argparse.Namespace) -> int:
    module = importlib.import_module(BENCHES[args.bench_name])
    result = module.run(args)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgebox", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"edgebox {__version__}")
    parser.add_argument("--log-level", default="warning", help="debug, info, warning (default), error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name in COMMAND_MODULES:
        module = _optional_import(name)
        if module is not None:
            module.register(sub)

    bench = sub.add_parser("bench", help="run a benchmark and print its figures")
    bench_sub = bench.add_subparsers(dest="bench_name", required=True, metavar="NAME")
    for name, module_name in BENCHES.items():
        module = _optional_import(module_name)
        if module is None:
            continue
        p = bench_sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        p.add_argument("--json", action="store_true", help="print one JSON object")
        if hasattr(module, "add_arguments"):
            module.add_arguments(p)
        p.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        rc: int = args.func(args)
    except EdgeboxError as exc:
        print(f"edgebox: error [{exc.code}]: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
