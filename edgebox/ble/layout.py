"""The frozen GATT layout of the edgebox service and the small wire rules of the BLE transport.

Theory of operation. Phones cache GATT handles for a long time (iOS 24-48 h), so the layout below is
frozen: one primary service with three characteristics, fixed 128-bit UUIDs (documented in
docs/ble.md). Anything that may evolve is versioned inside values, never by changing the layout.

- RX   (write, write-without-response): phone -> box. One ATT write = one datagram, no header. The
  box identifies the phone by the D-Bus device path BlueZ passes with the write.
- TX   (notify): box -> phone. One notification = TAG (4 bytes) + one datagram. BlueZ before 5.70
  sends every notification of an external characteristic to EVERY subscribed phone (one
  AcquireNotify socket, or PropertiesChanged), so the TAG - random per connection, learnt by the
  phone from INFO - lets each phone keep only its own datagrams. With BlueZ >= 5.70 the box gets
  one AcquireNotify socket per phone and nothing is broadcast; the TAG stays (same wire format for
  every box).
- INFO (read): a compact JSON object, per connection: the BLE layout version ("v"), the phone's
  link tag ("tag", hex), the link datagram size ("mtu"), and the caller's box facts (protocol
  version, box id, box key hash). Read with offsets (long read) when larger than ATT_MTU - 1.

Datagram size: a notification from a BlueZ server to a client that supports "Multiple Handle Value
Notification" carries ATT_MTU - 5 bytes (ATT_MTU - 3 otherwise) and an attribute value is at most
512 bytes, so the usable datagram is min(ATT_MTU - 5, 512) - TAG_LEN in both directions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from edgebox.errors import EdgeboxError

SERVICE_UUID = "6b1e0000-3c57-4f0e-9a5e-2f7b5e0d1a01"
RX_UUID = "6b1e0001-3c57-4f0e-9a5e-2f7b5e0d1a01"
TX_UUID = "6b1e0002-3c57-4f0e-9a5e-2f7b5e0d1a01"
INFO_UUID = "6b1e0003-3c57-4f0e-9a5e-2f7b5e0d1a01"

LAYOUT_VERSION = 1
TAG_LEN = 4
ATT_MAX_VALUE = 512
ATT_DEFAULT_MTU = 23
# Largest ATT_MTU BlueZ negotiates (the value is capped at 512 anyway).
ATT_MAX_MTU = 517
MAX_INFO_BYTES = 400
_BOX_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class BleError(EdgeboxError):
    """A BLE transport failure (adapter, BlueZ, GATT layout)."""

    code = "ble_error"


class InfoError(BleError):
    """The INFO characteristic value is malformed or from an incompatible layout."""

    code = "ble_info_invalid"


def datagram_size(att_mtu: int) -> int:
    """Usable datagram size for a link whose ATT MTU is `att_mtu` (same in both directions)."""
    att_mtu = max(ATT_DEFAULT_MTU, min(int(att_mtu), ATT_MAX_MTU))
    return min(att_mtu - 5, ATT_MAX_VALUE) - TAG_LEN


@dataclass(frozen=True)
class BoxInfo:
    """What the box publishes in INFO besides the per-connection link fields."""

    protocol_version: int
    box_id: str
    box_key_hash: bytes  # a hash of the box's public key (e.g. SHA-256), not a secret

    def __post_init__(self) -> None:
        if not _BOX_ID_RE.match(self.box_id):
            raise InfoError("box id must be 1-64 characters of [A-Za-z0-9._-]")
        if not 0 <= self.protocol_version < 2**16:
            raise InfoError("protocol version out of range")
        if not 0 < len(self.box_key_hash) <= 64:
            raise InfoError("box key hash must be 1-64 bytes")


@dataclass(frozen=True)
class LinkInfo:
    """INFO as one phone sees it: the box facts plus its own link tag and datagram size."""

    box: BoxInfo
    tag: bytes
    mtu: int


def encode_info(box: BoxInfo, tag: bytes, mtu: int) -> bytes:
    value = json.dumps(
        {
            "v": LAYOUT_VERSION,
            "proto": box.protocol_version,
            "box": box.box_id,
            "key": box.box_key_hash.hex(),
            "tag": tag.hex(),
            "mtu": mtu,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    assert len(value) <= MAX_INFO_BYTES
    return value


def decode_info(value: bytes) -> LinkInfo:
    """Parse an INFO value; raises InfoError on anything malformed or of another layout version."""
    if len(value) > MAX_INFO_BYTES:
        raise InfoError("INFO value too long")
    try:
        obj = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InfoError("INFO value is not JSON") from exc
    if not isinstance(obj, dict):
        raise InfoError("INFO value is not an object")
    if obj.get("v") != LAYOUT_VERSION:
        raise InfoError(f"unsupported BLE layout version {obj.get('v')!r}")
    try:
        proto, box_id, key, tag, mtu = obj["proto"], obj["box"], obj["key"], obj["tag"], obj["mtu"]
    except KeyError as exc:
        raise InfoError(f"INFO lacks field {exc.args[0]!r}") from exc
    if not isinstance(proto, int) or not isinstance(box_id, str) or not isinstance(mtu, int):
        raise InfoError("INFO field of the wrong type")
    if not isinstance(key, str) or not isinstance(tag, str):
        raise InfoError("INFO field of the wrong type")
    try:
        key_bytes, tag_bytes = bytes.fromhex(key), bytes.fromhex(tag)
    except ValueError as exc:
        raise InfoError("INFO hex field malformed") from exc
    if len(tag_bytes) != TAG_LEN:
        raise InfoError("INFO tag has the wrong length")
    if not datagram_size(ATT_DEFAULT_MTU) <= mtu <= datagram_size(ATT_MAX_MTU):
        raise InfoError("INFO datagram size out of range")
    return LinkInfo(BoxInfo(proto, box_id, key_bytes), tag_bytes, mtu)


def split_notification(value: bytes, tag: bytes) -> bytes | None:
    """Return the datagram of a TX notification meant for `tag`, or None if it belongs to another phone."""
    if len(value) < TAG_LEN or value[:TAG_LEN] != tag:
        return None
    return value[TAG_LEN:]


def ble_name(box_id_hex: str) -> str:
    """The advertised local name of a box: short enough for a legacy advertisement, unique per box
    (the box advertises it, the phone CLI scans for it)."""
    return f"edgebox-{box_id_hex[:6]}"
