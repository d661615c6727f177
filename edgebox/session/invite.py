"""Pairing invitations: the payload of the QR code shown on the box's admin page.

Theory of operation (spec: docs/protocol.md, "Pairing invitation"). The QR code carries everything a
phone needs to pair without trusting the radio link:

    "EDGEBOX1:" + base32(box_id(8) | box_key_hash(32) | secret_id(8) | secret(16)
                         | expires_at(u32) | check(2))

box_key_hash pins the box's long-term key (no MITM); the 128-bit one-time secret is mixed into the
handshake KDF; secret_id names it (public) so the box can find it and count attempts; expires_at is
Unix seconds; check = SHA-256(preceding bytes)[:2] catches transcription errors with a clear error.
Base32 keeps the text inside the QR alphanumeric set (dense codes). The box never stores the secret:
it keeps only psk = SHA-256("edgebox v1 pairing psk" | secret), which is exactly what the
handshake mixes into its keys (`handshake.pairing_psk`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import struct
from dataclasses import dataclass

from edgebox.errors import EdgeboxError
from edgebox.session import crypto
from edgebox.session.handshake import SECRET_ID_LEN, SECRET_LEN, pairing_psk

PREFIX = "EDGEBOX1:"
BOX_ID_LEN = 8
_BODY = struct.Struct(f">{BOX_ID_LEN}s32s{SECRET_ID_LEN}s{SECRET_LEN}sI")
# 10 min: a branch manager shows the code on the admin page, then walks to the phone; single use
# and 5 failed proofs bound the risk. `[box] invite_ttl_s` and the admin page use the same default.
DEFAULT_TTL_SECONDS = 600
DEFAULT_MAX_ATTEMPTS = 5


class InviteError(EdgeboxError):
    code = "invite_invalid"


@dataclass(frozen=True, slots=True)
class PairingInvite:
    box_id: bytes
    box_key_hash: bytes
    secret_id: bytes
    secret: bytes
    expires_at: int

    def encode(self) -> str:
        body = _BODY.pack(self.box_id, self.box_key_hash, self.secret_id, self.secret, self.expires_at)
        raw = body + crypto.sha256(body)[:2]
        return PREFIX + base64.b32encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, text: str) -> PairingInvite:
        text = text.strip()
        if not text.upper().startswith(PREFIX):
            raise InviteError("not an edgebox pairing code (expected EDGEBOX1:...)")
        payload = text[len(PREFIX) :].upper()
        try:
            raw = base64.b32decode(payload + "=" * (-len(payload) % 8))
        except (binascii.Error, ValueError):
            raise InviteError("pairing code is not valid base32") from None
        if len(raw) != _BODY.size + 2:
            raise InviteError("pairing code has the wrong length")
        body, check = raw[:-2], raw[-2:]
        if not hmac.compare_digest(crypto.sha256(body)[:2], check):
            raise InviteError("pairing code checksum mismatch (mistyped or damaged)")
        box_id, key_hash, secret_id, secret, expires_at = _BODY.unpack(body)
        return cls(box_id, key_hash, secret_id, secret, expires_at)

    @property
    def box_id_hex(self) -> str:
        return self.box_id.hex()

    def expired(self, now_unix: float) -> bool:
        return now_unix >= self.expires_at

    def psk(self) -> bytes:
        """What the box stores for this invitation instead of the secret."""
        return pairing_psk(self.secret)


def new_secret() -> bytes:
    return os.urandom(SECRET_LEN)


def new_invite(
    box_id: bytes, box_key_hash: bytes, now_unix: float, ttl: int = DEFAULT_TTL_SECONDS
) -> PairingInvite:
    return PairingInvite(
        box_id=box_id,
        box_key_hash=box_key_hash,
        secret_id=os.urandom(SECRET_ID_LEN),
        secret=os.urandom(SECRET_LEN),
        expires_at=int(now_unix) + ttl,
    )
