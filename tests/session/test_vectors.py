"""docs/protocol-vectors.json is what the code produces, and what the spec says, checked independently."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from edgebox.session import vectors

VECTORS = json.loads((Path(__file__).parents[2] / "docs" / "protocol-vectors.json").read_text())


def expand(prk: bytes, label: bytes, ctx: bytes = b"") -> bytes:
    return HKDFExpand(hashes.SHA256(), 32, b"edgebox v1 " + label + ctx).derive(prk)


def test_vectors_file_matches_code() -> None:
    assert vectors.generate() == VECTORS


def test_spec_key_schedule_from_primitives() -> None:
    """Re-derive the pairing handshake with raw primitives, following docs/protocol.md only."""
    v = VECTORS["pairing"]
    i = VECTORS["inputs"]
    m = {k: bytes.fromhex(x) for k, x in v["messages"].items()}
    secret_id, secret = bytes.fromhex(i["secret_id"]), bytes.fromhex(i["secret"])
    psk = hashlib.sha256(b"edgebox v1 pairing psk" + secret).digest()
    assert psk.hex() == v["psk"]
    phone_eph = ec.derive_private_key(int(i["phone_ephemeral_scalar"], 16), ec.SECP256R1())
    box_eph_pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), m["box_auth"][41:106])
    shared = phone_eph.exchange(ec.ECDH(), box_eph_pub)
    ms = hmac.new(psk, shared, hashlib.sha256).digest()
    assert ms.hex() == v["master_secret"]
    hello = m["hello"]
    assert hello[:3] == bytes((0x01, 1, 2)) and hello[-8:] == secret_id and len(hello) == 108
    th2 = hashlib.sha256(hello + m["box_auth"][:106]).digest()
    k2 = expand(ms, b"box hs key", th2)
    plain = AESGCM(k2).decrypt(bytes(12), m["box_auth"][106:], th2)
    box_pub, sig, mac = plain[:65], plain[65:129], plain[129:]
    assert box_pub.hex() == v["box_public"]
    assert hashlib.sha256(box_pub).hexdigest() == v["box_key_hash"]
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), box_pub).verify(
        der, b"edgebox v1 box sig" + th2, ec.ECDSA(hashes.SHA256())
    )
    f2 = expand(ms, b"box finished", th2)
    assert hmac.new(f2, b"box" + box_pub, hashlib.sha256).digest() == mac
    th3 = hashlib.sha256(hello + m["box_auth"]).digest()
    plain3 = AESGCM(expand(ms, b"phone hs key", th3)).decrypt(bytes(12), m["phone_auth"][1:], th3)
    assert plain3[:65].hex() == v["phone_public"]
    th4 = hashlib.sha256(hello + m["box_auth"] + m["phone_auth"]).digest()
    b2p = expand(ms, b"b2p traffic", th4)
    p2b = expand(ms, b"p2b traffic", th4)
    assert (p2b.hex(), b2p.hex()) == (v["p2b_traffic_secret"], v["b2p_traffic_secret"])
    sid = m["box_auth"][1:9]
    # ACCEPT: first box->phone record: type 0x13, counter 0 (implicit), empty.
    acc = m["accept_record"]
    n0 = bytes(12)
    assert acc[0] == 0x13 and len(acc) == 17
    aad = b"EBR1" + sid + bytes((0x13,)) + n0
    assert AESGCM(expand(b2p, b"traffic key")).decrypt(n0, acc[1:], aad) == b""
    # First phone->box DATA record: counter 0 in its own direction.
    rec = m["p2b_data_record"]
    aad = b"EBR1" + sid + bytes((0x10,)) + n0
    pt = AESGCM(expand(p2b, b"traffic key")).decrypt(n0, rec[1:], aad)
    assert json.loads(pt) == {"type": "ping", "nonce": 1}
    # Second box->phone record (after ACCEPT) uses counter 1.
    rec = m["b2p_data_record"]
    n1 = (1).to_bytes(12, "big")
    pt = AESGCM(expand(b2p, b"traffic key")).decrypt(n1, rec[1:], b"EBR1" + sid + bytes((0x10,)) + n1)
    assert json.loads(pt) == {"type": "pong", "nonce": 1}


def test_framing_vector_layout() -> None:
    f = VECTORS["framing"]
    req = bytes.fromhex(f["caps_request"])
    assert req == bytes((0x20,)) + b"EB" + bytes((1, 1)) + (20).to_bytes(2, "big") + bytes((3,))
    frags = [bytes.fromhex(x) for x in f["fragments"]]
    assert frags[0][0] == 0x09 and frags[0][1] == 0 and frags[0][2:4] == (50).to_bytes(2, "big")
    assert frags[-1][0] & 0x02
    assert all(len(x) <= 20 for x in frags)
    assert b"".join([frags[0][4:]] + [x[2:] for x in frags[1:]]) == bytes.fromhex(f["message"])
