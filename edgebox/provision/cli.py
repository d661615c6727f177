"""`edgebox provision ...`: apply the boot partition's edgebox.toml (first boot) and print the
box unit's network policy (every boot). File I/O around `edgebox.provision.core`.

edgebox provision apply --boot-file F --template T --state-dir D   write D/box.toml (+ D/gateway-ca.pem)
edgebox provision ip-allow --boot-file F                           print the IPAddressAllow= value
edgebox provision admin-setup --boot-file F --state-dir D          import the admin page's set-up code
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

from edgebox.errors import EdgeboxError
from edgebox.keyfile import write_atomic
from edgebox.provision.core import (
    CA_DEST_NAME,
    Provisioning,
    ProvisioningError,
    check_ca_pem,
    dump_toml,
    ip_allow,
    merge_config,
    parse_provisioning,
)

HEADER = """edgebox box config, written at first boot by `edgebox provision apply` from
/usr/share/edgebox/box.toml (shipped defaults) and /boot/firmware/edgebox.toml (provisioning).
Change settings from the admin page; the schema is in docs/box.md."""


def _read_provisioning(path: Path) -> Provisioning:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Provisioning()  # no file: a box without a gateway (enrol later from the admin page)
    except (OSError, UnicodeDecodeError):
        raise ProvisioningError(f"cannot read {path}") from None
    return parse_provisioning(text)


def apply(boot_file: Path, template: Path, state_dir: Path) -> Path:
    """Write <state_dir>/box.toml once (an existing config belongs to the admin page: kept)."""
    out = state_dir / "box.toml"
    if out.exists():
        return out
    prov = _read_provisioning(boot_file)
    try:
        base = tomllib.loads(template.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        raise ProvisioningError(f"the shipped config template {template} is unreadable") from None
    doc = merge_config(base, prov, str(state_dir))
    ca_data = b""
    if prov.ca_file:
        try:
            ca_data = (boot_file.parent / prov.ca_file).read_bytes()
        except OSError:
            raise ProvisioningError("[gateway] ca_file is not on the boot partition") from None
        check_ca_pem(ca_data)
    text = dump_toml(doc, HEADER)
    # Validate against the daemon's own schema (edgebox.box.config, docs/box.md) when present.
    try:
        schema = importlib.import_module("edgebox.box.config")
    except ModuleNotFoundError:
        schema = None
    if schema is not None and hasattr(schema, "parse_box_config"):
        schema.parse_box_config(tomllib.loads(text), origin="provisioned box config")
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if ca_data:
        write_atomic(state_dir / CA_DEST_NAME, ca_data, 0o644)
    write_atomic(out, text.encode(), 0o600)
    return out


def _apply(args: argparse.Namespace) -> int:
    out = apply(args.boot_file, args.template, args.state_dir)
    print(f"box config: {out}")
    return 0


def _ip_allow(args: argparse.Namespace) -> int:
    print(ip_allow(_read_provisioning(args.boot_file)))
    return 0


def admin_setup(boot_file: Path, state_dir: Path) -> bool:
    """Move the installer's one-time admin set-up code from the boot partition into the admin
    page's records (hashed; the file is deleted). Runs as root at boot because the daemon can
    neither read nor delete files on the boot partition."""
    if not boot_file.is_file():
        return False
    try:
        records = importlib.import_module("edgebox.admin.records")
        service = importlib.import_module("edgebox.admin.service")
    except ModuleNotFoundError:
        raise ProvisioningError("this edgebox has no admin page to take a set-up code") from None
    codes = records.SetupCodes(service.admin_dir(state_dir))
    return bool(codes.import_boot_file(boot_file))


def _admin_setup(args: argparse.Namespace) -> int:
    if admin_setup(args.boot_file, args.state_dir):
        print("admin set-up code imported from the boot partition (file removed)")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("provision", help="first-boot provisioning of the SD image")
    psub = p.add_subparsers(dest="provision_command", required=True, metavar="ACTION")
    a = psub.add_parser("apply", help="write the box config from the boot partition's edgebox.toml")
    a.add_argument("--boot-file", type=Path, default=Path("/boot/firmware/edgebox.toml"))
    a.add_argument("--template", type=Path, default=Path("/usr/share/edgebox/box.toml"))
    a.add_argument("--state-dir", type=Path, default=Path("/var/lib/edgebox"))
    a.set_defaults(func=_apply)
    n = psub.add_parser("ip-allow", help="print the box unit's IPAddressAllow= value")
    n.add_argument("--boot-file", type=Path, default=Path("/boot/firmware/edgebox.toml"))
    n.set_defaults(func=_ip_allow)
    s = psub.add_parser("admin-setup", help="import the admin set-up code from the boot partition")
    s.add_argument("--boot-file", type=Path, default=Path("/boot/firmware/edgebox-admin-setup.txt"))
    s.add_argument("--state-dir", type=Path, default=Path("/var/lib/edgebox"))
    s.set_defaults(func=_admin_setup)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgebox")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["provision", *(sys.argv[1:] if argv is None else argv)])
    try:
        rc: int = args.func(args)
    except EdgeboxError as exc:
        print(f"edgebox: error [{exc.code}]: {exc}", file=sys.stderr)
        return 2
    return rc
