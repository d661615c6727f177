"""Handshake wire messages and key schedule (SIGMA-I over P-256), as pure functions.

Theory of operation (spec: docs/protocol.md, "Handshake"):

    caps       framing capabilities request | response (15 bytes, docs/protocol.md 3.1)
    HELLO      phone -> box   0x01 | ver=2 | mode | phone_random(32) | phone_eph(65) [| secret_id(8)]
    BOX_AUTH   box -> phone   0x02 | session_id(8) | box_random(32) | box_eph(65)
                                   | AEAD_k2{box_pub | sig_b | mac_b}
    PHONE_AUTH phone -> box   0x03 | AEAD_k3{phone_pub | sig_p | mac_p}
    ERROR      either         0x7F | code(u16)     (plaintext: only before the receiver has keys)

    psk  = SHA-256("edgebox v2 pairing psk" | secret)  in pairing mode, else 32 zero bytes
    ms   = HKDF-Extract(salt=psk, ikm=ECDH(eph_phone, eph_box))
    th2  = SHA-256(caps | HELLO | BOX_AUTH without its ciphertext);  th3 = SHA-256(caps | HELLO | BOX_AUTH)
    th4  = SHA-256(caps | HELLO | BOX_AUTH | PHONE_AUTH)
    k2, f2 = Expand(ms, "box hs key" | th2), Expand(ms, "box finished" | th2)
    k3, f3 = Expand(ms, "phone hs key" | th3), Expand(ms, "phone finished" | th3)
    sig_b = ECDSA(box_sk, "edgebox v2 box sig" | th2);  mac_b = HMAC(f2, "box" | box_pub)
    sig_p = ECDSA(phone_sk, "edgebox v2 phone sig" | th3); mac_p = HMAC(f3, "phone" | phone_pub)
    p2b, b2p traffic secrets = Expand(ms, "p2b traffic" | th4), Expand(ms, "b2p traffic" | th4)

The transcript starts with the framing capabilities exchange (as TLS 1.3 binds supported_versions),
so a man in the middle who rewrites the offered versions, MTU or window breaks both signatures.
Signatures bind each long-term key to both ephemerals (the transcript); the MACs bind each identity
to the derived keys (SIGMA's identity-misbinding defence); the phone's identity travels encrypted
(identity hiding) and is revealed only after the box proved it holds the pinned key. In pairing mode
the one-time secret from the QR code is mixed into every key, so a phone that does not know it can
neither read BOX_AUTH nor produce PHONE_AUTH.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edgebox.session import crypto
from edgebox.session.config import PROTOCOL_VERSION as PROTOCOL_VERSION
from edgebox.session.errors import ErrorCode, RemoteProtocolError

RANDOM_LEN = 32
SESSION_ID_LEN = 8
SECRET_ID_LEN = 8
SECRET_LEN = 16
CAPS_LEN = 15  # capabilities request (8) + response (7): the transcript's first bytes
_ZERO_NONCE = bytes(12)
_ZERO_PSK = bytes(32)
_IDENTITY_LEN = crypto.POINT_LEN + crypto.SIG_LEN + 32
SEALED_IDENTITY_LEN = _IDENTITY_LEN + 16


class MsgType(IntEnum):
    hello = 0x01
    box_auth = 0x02
    phone_auth = 0x03
    error = 0x7F


class Mode(IntEnum):
    session = 1
    pairing = 2


@dataclass(frozen=True, slots=True)
class Hello:
    mode: Mode
    random: bytes
    ephemeral: bytes
    secret_id: bytes | None

    def encode(self) -> bytes:
        tail = self.secret_id if self.mode is Mode.pairing and self.secret_id else b""
        return bytes((MsgType.hello, PROTOCOL_VERSION, self.mode)) + self.random + self.ephemeral + tail

    @classmethod
    def decode(cls, data: bytes) -> Hello:
        base = 3 + RANDOM_LEN + crypto.POINT_LEN
        if len(data) < 3 or data[0] != MsgType.hello:
            raise RemoteProtocolError(ErrorCode.malformed, "not a HELLO message")
        if data[1] != PROTOCOL_VERSION:  # v1 HELLOs are refused with a typed plaintext ERROR
            raise RemoteProtocolError(ErrorCode.unsupported_version, "unsupported protocol version")
        if data[2] not in (Mode.session, Mode.pairing):
            raise RemoteProtocolError(ErrorCode.malformed, "unknown handshake mode")
        mode = Mode(data[2])
        want = base + (SECRET_ID_LEN if mode is Mode.pairing else 0)
        if len(data) != want:
            raise RemoteProtocolError(ErrorCode.malformed, "HELLO has the wrong length")
        eph = data[3 + RANDOM_LEN : base]
        crypto.decode_public(eph)  # validate early: invalid-curve points never reach ECDH
        return cls(mode, data[3 : 3 + RANDOM_LEN], eph, data[base:] if mode is Mode.pairing else None)


@dataclass(frozen=True, slots=True)
class BoxAuth:
    session_id: bytes
    random: bytes
    ephemeral: bytes
    sealed: bytes

    CLEAR_LEN = 1 + SESSION_ID_LEN + RANDOM_LEN + crypto.POINT_LEN

    def clear_part(self) -> bytes:
        return bytes((MsgType.box_auth,)) + self.session_id + self.random + self.ephemeral

    def encode(self) -> bytes:
        return self.clear_part() + self.sealed

    @classmethod
    def decode(cls, data: bytes) -> BoxAuth:
        if len(data) != cls.CLEAR_LEN + SEALED_IDENTITY_LEN or data[0] != MsgType.box_auth:
            raise RemoteProtocolError(ErrorCode.malformed, "BOX_AUTH has the wrong type or length")
        p = 1
        sid = data[p : p + SESSION_ID_LEN]
        p += SESSION_ID_LEN
        rnd = data[p : p + RANDOM_LEN]
        p += RANDOM_LEN
        eph = data[p : p + crypto.POINT_LEN]
        crypto.decode_public(eph)
        return cls(sid, rnd, eph, data[cls.CLEAR_LEN :])


def decode_phone_auth(data: bytes) -> bytes:
    if len(data) != 1 + SEALED_IDENTITY_LEN or data[0] != MsgType.phone_auth:
        raise RemoteProtocolError(ErrorCode.malformed, "PHONE_AUTH has the wrong type or length")
    return data[1:]


def encode_error(code: ErrorCode) -> bytes:
    return struct.pack(">BH", MsgType.error, code)


def decode_error(data: bytes) -> ErrorCode:
    if len(data) != 3 or data[0] != MsgType.error:
        raise RemoteProtocolError(ErrorCode.malformed, "ERROR has the wrong length")
    (value,) = struct.unpack_from(">H", data, 1)
    try:
        return ErrorCode(value)
    except ValueError:
        return ErrorCode.internal


def pairing_psk(secret: bytes) -> bytes:
    """What the box stores for a pairing secret (never the secret itself)."""
    return crypto.sha256(crypto.LABEL_PREFIX + b"pairing psk", secret)


def master_secret(shared: bytes, psk: bytes | None) -> bytes:
    return crypto.hkdf_extract(psk or _ZERO_PSK, shared)


def seal_identity(
    ms: bytes, role: bytes, th: bytes, identity: crypto.PrivateKey, public_point: bytes
) -> bytes:
    """AEAD{pub | sig | mac} under the role's handshake key (role is b"box" or b"phone")."""
    key = crypto.hkdf_expand(ms, role + b" hs key", th)
    fin = crypto.hkdf_expand(ms, role + b" finished", th)
    sig = crypto.sign(identity, crypto.LABEL_PREFIX + role + b" sig" + th)
    tag = crypto.mac(fin, role, public_point)
    return AESGCM(key).encrypt(_ZERO_NONCE, public_point + sig + tag, th)


def open_identity(ms: bytes, role: bytes, th: bytes, sealed: bytes) -> tuple[bytes, crypto.PublicKey]:
    """Decrypt and verify a sealed identity; return (public point, key). Raises auth_failed."""
    key = crypto.hkdf_expand(ms, role + b" hs key", th)
    fin = crypto.hkdf_expand(ms, role + b" finished", th)
    try:
        plain = AESGCM(key).decrypt(_ZERO_NONCE, sealed, th)
    except InvalidTag:
        raise RemoteProtocolError(
            ErrorCode.auth_failed, f"{role.decode()} identity failed to decrypt"
        ) from None
    point = plain[: crypto.POINT_LEN]
    sig = plain[crypto.POINT_LEN : crypto.POINT_LEN + crypto.SIG_LEN]
    tag = plain[crypto.POINT_LEN + crypto.SIG_LEN :]
    public = crypto.decode_public(point)
    crypto.verify(public, sig, crypto.LABEL_PREFIX + role + b" sig" + th)
    crypto.mac_verify(fin, tag, role, point)
    return point, public


def traffic_secrets(ms: bytes, th4: bytes) -> tuple[bytes, bytes]:
    """(phone->box, box->phone) initial traffic secrets."""
    return crypto.hkdf_expand(ms, b"p2b traffic", th4), crypto.hkdf_expand(ms, b"b2p traffic", th4)
