"""Device identity from the verified client certificate, and the live connections of each box.

Theory of operation: TLS verifies the client certificate against the device CA; the box id is read
only from the certificate's SAN URI (`urn:edgebox:box:<id>`), once per connection, and cached on the
transport. Headers never claim an identity (`X-Edgebox-Phone` only says which of the box's own phones a
request is for). `ConnectionTable` remembers each box's live transports (weakly), so a revocation can
abort them at once, and `sweep()` aborts connections whose certificate expired or was revoked by
someone else (an operator, another replica) — a long stream or an idle keep-alive connection cannot
outlive a revocation by more than one sweep interval.
"""

from __future__ import annotations

import re
import ssl
import time
import weakref
from dataclasses import dataclass
from typing import Any

from edgebox.gateway.errors import GatewayError
from edgebox.log import get_logger
from edgebox.pki.ca import BOX_URI_PREFIX
from edgebox.pki.store import CertStore

log = get_logger("edgebox.gateway")

PHONE_HEADER = "X-Edgebox-Phone"
_PHONE_ID = re.compile(r"[0-9a-f]{2,64}")


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    box_id: str
    serial: str
    not_after: float  # epoch seconds


def identity_from_peercert(peer: dict[str, Any] | None) -> DeviceIdentity | None:
    """The device identity of a verified peer certificate (ssl.getpeercert() form), or None."""
    if not peer:
        return None
    box_id = None
    for kind, value in peer.get("subjectAltName", ()):
        if kind == "URI" and isinstance(value, str) and value.startswith(BOX_URI_PREFIX):
            box_id = value[len(BOX_URI_PREFIX) :]
            break
    serial = str(peer.get("serialNumber", "")).lower().lstrip("0")
    not_after = peer.get("notAfter")
    if not box_id or not serial or not isinstance(not_after, str):
        return None
    return DeviceIdentity(box_id, serial, ssl.cert_time_to_seconds(not_after))


def phone_of(value: str | None) -> str | None:
    """The phone id a box names in `X-Edgebox-Phone` (lowercase hex), None when absent."""
    if value is None:
        return None
    v = value.strip().lower()
    if not _PHONE_ID.fullmatch(v):
        raise GatewayError("invalid_request", f"{PHONE_HEADER} must be 2-64 hex digits", param=PHONE_HEADER)
    return v


class ConnectionTable:
    def __init__(self) -> None:
        self._idents: weakref.WeakKeyDictionary[Any, DeviceIdentity] = weakref.WeakKeyDictionary()
        self._live: dict[str, weakref.WeakSet[Any]] = {}

    def identify(self, transport: Any) -> DeviceIdentity:
        if transport is None:
            raise GatewayError("device_unknown", "no TLS client identity")
        ident = self._idents.get(transport)
        if ident is None:
            ident = identity_from_peercert(transport.get_extra_info("peercert"))
            if ident is None:
                raise GatewayError("device_unknown", "client certificate carries no edgebox box identity")
            self._idents[transport] = ident
            self._live.setdefault(ident.box_id, weakref.WeakSet()).add(transport)
        return ident

    def close_box(self, box_id: str, *, spare: Any = None) -> int:
        """Abort every live connection of a box (except `spare`, closed after its current response)."""
        n = 0
        for t in list(self._live.pop(box_id, None) or ()):
            if t is not spare and not t.is_closing():
                t.abort()
                n += 1
        return n

    def abort_all(self) -> None:
        for conns in self._live.values():
            for t in list(conns):
                t.abort()

    async def sweep(self, store: CertStore) -> None:
        now = time.time()
        for box_id, conns in list(self._live.items()):
            live = [t for t in conns if not t.is_closing()]
            if not live:
                self._live.pop(box_id, None)
                continue
            for t in live:
                ident = self._idents.get(t)
                if ident is None:
                    continue
                if now >= ident.not_after or await store.is_revoked(ident.serial, box_id):
                    t.abort()
                    log.info("connection_closed_revoked", device=box_id, serial=ident.serial)
