"""Provisioning of a flashed card: the boot-partition file `edgebox.toml` -> the box's config.

Theory of operation: the SD image is generic; what differs per branch is written by the installer
into one small TOML file on the FAT boot partition (`/boot/firmware/edgebox.toml`, editable on any
PC after flashing). At first boot `edgebox-firstboot.service` merges it into the shipped defaults
(`/usr/share/edgebox/box.toml`) and writes the box's config on the data partition
(`/var/lib/edgebox/box.toml`, which `/etc/edgebox/box.toml` points to); after that the admin page
owns the settings, and the boot file only feeds the network policy on each boot.

This module is the sans-I/O core: `parse_provisioning(text)` validates the installer's file (every
key optional, unknown keys refused, values never echoed in errors), `merge_config()` produces the
config document, `dump_toml()` renders it, and `ip_allow()` gives the unit's `IPAddressAllow=`
value. `edgebox.provision.cli` does the file I/O (atomic writes).

The provisioning file:

    [gateway]
    url = "https://gateway.example.net:8443"   # the box's uplink
    ca_file = "edgebox-ca.pem"                 # the device CA, a file beside edgebox.toml
    prefixes = ["203.0.113.0/24"]              # addresses the box may reach (default: any)

    [ble]
    name = "edgebox-branch-12"                 # advertised name (default from the box id)

    [admin]
    port = 443                                 # informational: the socket unit listens on 443
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from edgebox.errors import EdgeboxError

STATE_DIR = "/var/lib/edgebox"
CA_DEST_NAME = "gateway-ca.pem"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,28}$")
_CA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\.(pem|crt)$")
_HOST = re.compile(r"^[A-Za-z0-9.:-]{1,253}$")
_ALLOWED: dict[str, set[str]] = {
    "gateway": {"url", "ca_file", "prefixes"},
    "ble": {"name"},
    "admin": {"port"},
}
MAX_CA_BYTES = 64 * 1024


class ProvisioningError(EdgeboxError):
    """The boot partition's edgebox.toml is unusable (the message names the key, never the value)."""

    code = "provisioning_invalid"


@dataclass(frozen=True)
class Provisioning:
    gateway_url: str = ""
    ca_file: str = ""
    prefixes: tuple[str, ...] = ()
    ble_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _check_url(url: str) -> str:
    if not url.startswith("https://"):
        raise ProvisioningError("[gateway] url must start with https://")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ProvisioningError("[gateway] url has an invalid port") from None
    if not parts.hostname or parts.username or parts.password or not _HOST.match(parts.hostname):
        raise ProvisioningError("[gateway] url has no usable host")
    if port == 0 or parts.query or parts.fragment:
        raise ProvisioningError("[gateway] url must be https://host[:port][/path]")
    return url


def parse_provisioning(text: str) -> Provisioning:
    """Validate the installer's file. An empty file (or only comments) means 'defaults'."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message holds a line/column, not the offending text.
        raise ProvisioningError(f"edgebox.toml is not valid TOML ({exc})") from None
    for section, value in doc.items():
        if section not in _ALLOWED:
            raise ProvisioningError(f"unknown section [{section[:32]}] (allowed: gateway, ble, admin)")
        if not isinstance(value, dict):
            raise ProvisioningError(f"{section[:32]} must be a [section]")
        unknown = set(value) - _ALLOWED[section]
        if unknown:
            raise ProvisioningError(f"unknown key [{section}] {sorted(unknown)[0][:32]!r}")
    gw = doc.get("gateway", {})
    url = gw.get("url", "")
    ca = gw.get("ca_file", "")
    prefixes = gw.get("prefixes", [])
    if not isinstance(url, str) or not isinstance(ca, str):
        raise ProvisioningError("[gateway] url and ca_file must be strings")
    if url:
        _check_url(url)
        if not ca:
            raise ProvisioningError("[gateway] url needs ca_file (the device CA that pins the gateway)")
    if ca and not _CA_NAME.match(ca):
        raise ProvisioningError("[gateway] ca_file must be a plain file name ending in .pem or .crt")
    if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
        raise ProvisioningError("[gateway] prefixes must be a list of strings")
    nets: list[str] = []
    for p in prefixes:
        try:
            nets.append(str(ipaddress.ip_network(p, strict=False)))
        except ValueError:
            raise ProvisioningError("[gateway] prefixes holds an invalid address prefix") from None
    name = doc.get("ble", {}).get("name", "")
    if not isinstance(name, str) or (name and not _NAME.match(name)):
        raise ProvisioningError("[ble] name must be 1-29 letters, digits, space, '.', '_' or '-'")
    port = doc.get("admin", {}).get("port", 443)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ProvisioningError("[admin] port must be a port number")
    return Provisioning(url, ca, tuple(nets), name)


def check_ca_pem(data: bytes) -> None:
    """A CA file must be a PEM certificate (parsed for real by the box when it connects)."""
    if len(data) > MAX_CA_BYTES:
        raise ProvisioningError("the gateway CA file is too large")
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ProvisioningError("the gateway CA file is not a PEM certificate")


def merge_config(template: dict[str, Any], prov: Provisioning, state_dir: str = STATE_DIR) -> dict[str, Any]:
    """The config document: shipped defaults, the state dir, then the installer's values."""
    doc: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in template.items()}
    doc.setdefault("box", {})["state_dir"] = state_dir
    if prov.gateway_url:
        gw = doc.setdefault("gateway", {})
        gw["url"] = prov.gateway_url
        gw["ca_file"] = f"{state_dir}/{CA_DEST_NAME}"
    if prov.ble_name:
        doc.setdefault("ble", {})["name"] = prov.ble_name
    return doc


def ip_allow(prov: Provisioning) -> str:
    """`IPAddressAllow=` for the box unit: localhost always, plus the gateway prefixes, or any host
    when a gateway is configured without prefixes (DNS names can move), or nothing more without one."""
    if prov.prefixes:
        return " ".join(("localhost", *prov.prefixes))
    return "any" if prov.gateway_url else "localhost"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        out = value.replace("\\", "\\\\").replace('"', '\\"')
        out = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in out)
        return f'"{out}"'
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    raise ProvisioningError(f"cannot write a {type(value).__name__} to the config")


def dump_toml(doc: dict[str, Any], header: str = "") -> str:
    """Render a two-level document (top-level scalars, then one table per section)."""
    lines = [f"# {ln}" if ln else "#" for ln in header.splitlines()]
    tables = {k: v for k, v in doc.items() if isinstance(v, dict)}
    for k, v in doc.items():
        if not isinstance(v, dict):
            lines.append(f"{k} = {_scalar(v)}")
    for name, table in tables.items():
        lines += ["", f"[{name}]"]
        for k, v in table.items():
            if isinstance(v, dict):
                raise ProvisioningError("nested tables are not supported in the box config")
            lines.append(f"{k} = {_scalar(v)}")
    return "\n".join(lines) + "\n"
