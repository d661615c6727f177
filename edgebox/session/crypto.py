"""Cryptographic building blocks of the session protocol (P-256, ECDSA, HKDF-SHA-256, AES-256-GCM).

Theory of operation: thin, strict wrappers over `cryptography` so that every protocol decision is in
one place: public keys travel only as 65-byte uncompressed SEC1 points and are validated on decode
(on-curve check by OpenSSL; compressed, hybrid and infinity encodings are refused: the defence
against invalid-curve attacks such as CVE-2018-5383); signatures are fixed 64-byte r||s (deterministic
RFC 6979, so test vectors are reproducible); key derivation is HKDF-SHA-256 with labels prefixed by
LABEL_PREFIX. Nothing here keeps state.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from edgebox.session.errors import ErrorCode, RemoteProtocolError

CURVE = ec.SECP256R1()
POINT_LEN = 65
SCALAR_LEN = 32
SIG_LEN = 64
HASH_LEN = 32
LABEL_PREFIX = b"edgebox v2 "
_ECDSA = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

PrivateKey = ec.EllipticCurvePrivateKey
PublicKey = ec.EllipticCurvePublicKey


def sha256(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def generate_private_key() -> PrivateKey:
    return ec.generate_private_key(CURVE)


def private_key_from_scalar(scalar: bytes) -> PrivateKey:
    if len(scalar) != SCALAR_LEN:
        raise ValueError("private scalar must be 32 bytes")
    value = int.from_bytes(scalar, "big")
    if not 0 < value < _N:
        raise ValueError("private scalar out of range")
    return ec.derive_private_key(value, CURVE)


def private_key_scalar(key: PrivateKey) -> bytes:
    return key.private_numbers().private_value.to_bytes(SCALAR_LEN, "big")


def encode_public(key: PublicKey | PrivateKey) -> bytes:
    pub = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def decode_public(data: bytes) -> PublicKey:
    """Decode a 65-byte uncompressed P-256 point, refusing anything else with `invalid_point`."""
    if len(data) != POINT_LEN or data[0] != 0x04:
        raise RemoteProtocolError(
            ErrorCode.invalid_point, "public key is not a 65-byte uncompressed P-256 point"
        )
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(CURVE, bytes(data))
    except ValueError:
        raise RemoteProtocolError(ErrorCode.invalid_point, "public key is not on the P-256 curve") from None


def key_hash(public_point: bytes) -> bytes:
    """SHA-256 of the uncompressed point: the box key pin (QR code) and the phone id source."""
    return sha256(public_point)


def ecdh(private: PrivateKey, peer: PublicKey) -> bytes:
    return private.exchange(ec.ECDH(), peer)


def sign(private: PrivateKey, message: bytes) -> bytes:
    r, s = decode_dss_signature(private.sign(message, _ECDSA))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def verify(public: PublicKey, signature: bytes, message: bytes) -> None:
    if len(signature) != SIG_LEN:
        raise RemoteProtocolError(ErrorCode.auth_failed, "signature has the wrong length")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    try:
        public.verify(encode_dss_signature(r, s), message, _ECDSA)
    except InvalidSignature:
        raise RemoteProtocolError(ErrorCode.auth_failed, "signature did not verify") from None


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand(prk: bytes, label: bytes, context: bytes = b"", length: int = 32) -> bytes:
    return HKDFExpand(hashes.SHA256(), length, LABEL_PREFIX + label + context).derive(prk)


def mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def mac_verify(key: bytes, tag: bytes, *parts: bytes) -> None:
    if not hmac.compare_digest(mac(key, *parts), tag):
        raise RemoteProtocolError(ErrorCode.auth_failed, "finished MAC did not verify")
