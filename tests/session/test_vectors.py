"""docs/protocol-vectors.json is what the code produces, and what the spec says, checked independently.

The re-derivations below use only `cryptography`'s raw primitives and docs/protocol.md (v2): the
capabilities bytes open the transcript, every label starts "edgebox v2 ", records are
0x17 | AES-GCM(inner = content | type | zero padding) with aad "EBR2" | session id.
"""

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

from edgebox.session import states, vectors

ROOT = Path(__file__).parents[2]
VECTORS = json.loads((ROOT / "docs" / "protocol-vectors.json").read_text())


def expand(prk: bytes, label: bytes, ctx: bytes = b"") -> bytes:
    return HKDFExpand(hashes.SHA256(), 32, b"edgebox v2 " + label + ctx).derive(prk)


def open_record(secret: bytes, sid: bytes, counter: int, record: bytes) -> tuple[int, bytes, int]:
    """(type, content, inner length) of one v2 record, straight from the spec."""
    assert record[0] == 0x17
    nonce = counter.to_bytes(12, "big")
    inner = AESGCM(expand(secret, b"traffic key")).decrypt(nonce, record[1:], b"EBR2" + sid)
    stripped = inner.rstrip(b"\x00")
    return stripped[-1], stripped[:-1], len(inner)


def test_vectors_file_matches_code() -> None:
    assert vectors.generate() == VECTORS
    assert VECTORS["protocol_version"] == 2


def test_spec_key_schedule_from_primitives() -> None:
    """Re-derive the pairing handshake with raw primitives, following docs/protocol.md only."""
    v = VECTORS["pairing"]
    i = VECTORS["inputs"]
    m = {k: bytes.fromhex(x) for k, x in v["messages"].items()}
    caps = m["caps_request"] + m["caps_response"]
    assert m["caps_request"] == bytes((0x20,)) + b"EB" + bytes((2, 2)) + (244).to_bytes(2, "big") + bytes(
        (96,)
    )
    assert m["caps_response"] == bytes((0x20,)) + b"EB" + bytes((2,)) + (244).to_bytes(2, "big") + bytes(
        (96,)
    )
    secret_id, secret = bytes.fromhex(i["secret_id"]), bytes.fromhex(i["secret"])
    psk = hashlib.sha256(b"edgebox v2 pairing psk" + secret).digest()
    assert psk.hex() == v["psk"]
    phone_eph = ec.derive_private_key(int(i["phone_ephemeral_scalar"], 16), ec.SECP256R1())
    box_eph_pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), m["box_auth"][41:106])
    shared = phone_eph.exchange(ec.ECDH(), box_eph_pub)
    ms = hmac.new(psk, shared, hashlib.sha256).digest()
    assert ms.hex() == v["master_secret"]
    hello = m["hello"]
    assert hello[:3] == bytes((0x01, 2, 2)) and hello[-8:] == secret_id and len(hello) == 108
    th2 = hashlib.sha256(caps + hello + m["box_auth"][:106]).digest()
    assert th2.hex() == v["th2"]
    k2 = expand(ms, b"box hs key", th2)
    plain = AESGCM(k2).decrypt(bytes(12), m["box_auth"][106:], th2)
    box_pub, sig, mac = plain[:65], plain[65:129], plain[129:]
    assert box_pub.hex() == v["box_public"]
    assert hashlib.sha256(box_pub).hexdigest() == v["box_key_hash"]
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), box_pub).verify(
        der, b"edgebox v2 box sig" + th2, ec.ECDSA(hashes.SHA256())
    )
    f2 = expand(ms, b"box finished", th2)
    assert hmac.new(f2, b"box" + box_pub, hashlib.sha256).digest() == mac
    th3 = hashlib.sha256(caps + hello + m["box_auth"]).digest()
    plain3 = AESGCM(expand(ms, b"phone hs key", th3)).decrypt(bytes(12), m["phone_auth"][1:], th3)
    assert plain3[:65].hex() == v["phone_public"]
    th4 = hashlib.sha256(caps + hello + m["box_auth"] + m["phone_auth"]).digest()
    b2p = expand(ms, b"b2p traffic", th4)
    p2b = expand(ms, b"p2b traffic", th4)
    assert (p2b.hex(), b2p.hex()) == (v["p2b_traffic_secret"], v["b2p_traffic_secret"])
    sid = m["box_auth"][1:9]
    # ACCEPT: first box->phone record, counter 0, empty content, padded to one 128-byte block.
    acc = m["accept_record"]
    assert len(acc) == 1 + 128 + 16
    assert open_record(b2p, sid, 0, acc) == (0x13, b"", 128)
    # First phone->box DATA record: counter 0 in its own direction.
    kind, content, _ = open_record(p2b, sid, 0, m["p2b_data_record"])
    assert kind == 0x10 and json.loads(content) == {"type": "ping", "nonce": 1}
    # Second box->phone record (after ACCEPT) uses counter 1.
    kind, content, _ = open_record(b2p, sid, 1, m["b2p_data_record"])
    assert kind == 0x10 and json.loads(content) == {"type": "pong", "nonce": 1}


def test_refusal_is_an_encrypted_record_as_long_as_accept() -> None:
    r = VECTORS["refused"]
    m = {k: bytes.fromhex(x) for k, x in r["messages"].items()}
    sid = m["box_auth"][1:9]
    record = m["error_record"]
    assert len(record) == len(bytes.fromhex(VECTORS["session"]["messages"]["accept_record"]))
    kind, content, _ = open_record(bytes.fromhex(r["b2p_traffic_secret"]), sid, 0, record)
    assert kind == 0x14 and int.from_bytes(content, "big") == r["code"] == 9  # phone_revoked


def test_record_vectors_padding_and_types() -> None:
    rv = VECTORS["records"]
    sid, secret = bytes.fromhex(rv["session_id"]), bytes.fromhex(rv["send_secret"])
    assert rv["pad_block"] == 128
    names = {0x10: "data", 0x11: "rekey", 0x12: "close", 0x13: "accept", 0x14: "error", 0x15: "keepalive"}
    for r in rv["records"]:
        kind, content, inner_len = open_record(secret, sid, r["counter"], bytes.fromhex(r["wire"]))
        assert names[kind] == r["type"] and content.hex() == r["content"]
        assert inner_len % 128 == 0 and inner_len >= len(content) + 1 and inner_len - len(content) - 1 < 128


def test_old_version_peer_gets_a_response_it_can_parse() -> None:
    o = VECTORS["old_version"]
    answer = bytes.fromhex(o["box_answer"])
    # A v1 phone reads flags | "EB" | version | mtu | window and fails on version != 1.
    assert len(answer) == 7 and answer[:3] == bytes((0x20,)) + b"EB" and answer[3] == 2
    assert o["box_error"] == "unsupported_version"


def test_framing_vector_layout() -> None:
    f = VECTORS["framing"]
    req = bytes.fromhex(f["caps_request"])
    assert req == bytes((0x20,)) + b"EB" + bytes((2, 2)) + (20).to_bytes(2, "big") + bytes((3,))
    frags = [bytes.fromhex(x) for x in f["fragments"]]
    assert frags[0][0] == 0x09 and frags[0][1] == 0 and frags[0][2:4] == (50).to_bytes(2, "big")
    assert frags[-1][0] & 0x02
    assert all(len(x) <= 20 for x in frags)
    assert b"".join([frags[0][4:]] + [x[2:] for x in frags[1:]]) == bytes.fromhex(f["message"])


def test_spec_prints_the_transition_table() -> None:
    assert states.table_text() in (ROOT / "docs" / "protocol.md").read_text()
