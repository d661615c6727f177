"""Deterministic test vectors for docs/protocol-vectors.json.

Every input (long-term and ephemeral scalars, randoms, session id, pairing secret) is fixed and
signatures are deterministic (RFC 6979), so the whole exchange is reproducible byte for byte by
any implementation. `python -m edgebox.session.vectors > docs/protocol-vectors.json` regenerates
the file; tests check that the code still produces exactly what the file says.
"""

from __future__ import annotations

import json
from typing import Any

from edgebox.session import crypto, handshake
from edgebox.session.config import DEFAULT_CONFIG, PROTOCOL_VERSION
from edgebox.session.connection import BoxConnection, PhoneConnection
from edgebox.session.errors import ErrorCode
from edgebox.session.framing import Framer, Role
from edgebox.session.invite import PairingInvite
from edgebox.session.records import RecordLayer, RecordType, next_secret


def _scalar(tag: int) -> bytes:
    return crypto.sha256(b"edgebox test vector scalar", bytes([tag]))


def _key(tag: int) -> crypto.PrivateKey:
    return crypto.private_key_from_scalar(_scalar(tag))


INPUTS: dict[str, str] = {
    "box_private_scalar": _scalar(1).hex(),
    "phone_private_scalar": _scalar(2).hex(),
    "box_ephemeral_scalar": _scalar(3).hex(),
    "phone_ephemeral_scalar": _scalar(4).hex(),
    "phone_random": bytes(range(32)).hex(),
    "box_random": bytes(range(32, 64)).hex(),
    "session_id": "5e5510dd0000beef",
    "box_id": "b0b0b0b0b0b0b0b0",
    "secret_id": "0102030405060708",
    "secret": "000102030405060708090a0b0c0d0e0f",
    "expires_at": "1893456000",
}


def _caps() -> tuple[bytes, bytes]:
    """The capabilities exchange that opens the handshake transcript (phone mtu 244 window 96)."""
    phone = Framer(Role.phone, mtu=244, window=96)
    box = Framer(Role.box, mtu=244, window=96)
    req = phone.start()
    box.receive_datagram(req)
    [rsp] = box.datagrams_to_send()
    phone.receive_datagram(rsp)
    assert phone.capabilities == box.capabilities == req + rsp
    return req, rsp


def _handshake(mode: str, refuse: ErrorCode | None = None) -> dict[str, Any]:
    box_key, phone_key = _key(1), _key(2)
    box_eph, phone_eph = _key(3), _key(4)
    box_point = crypto.encode_public(box_key)
    pin = crypto.key_hash(box_point)
    secret_id = bytes.fromhex(INPUTS["secret_id"])
    secret = bytes.fromhex(INPUTS["secret"])
    pairing = (secret_id, secret) if mode == "pairing" else None
    req, rsp = _caps()
    caps = req + rsp
    phone = PhoneConnection(
        phone_key,
        pin,
        capabilities=caps,
        pairing_secret=pairing,
        ephemeral=phone_eph,
        random=bytes.fromhex(INPUTS["phone_random"]),
    )
    box = BoxConnection(
        box_key,
        capabilities=caps,
        ephemeral=box_eph,
        random=bytes.fromhex(INPUTS["box_random"]),
        session_id=bytes.fromhex(INPUTS["session_id"]),
    )
    phone.start()
    [hello] = phone.data_to_send()
    box.receive_message(hello, 0.0)
    psk = handshake.pairing_psk(secret) if pairing else None
    if pairing:
        box.provide_secret(psk)
    [box_auth] = box.data_to_send()
    phone.receive_message(box_auth, 0.0)
    [phone_auth] = phone.data_to_send()
    box.receive_message(phone_auth, 0.0)
    shared = crypto.ecdh(phone_eph, box_eph.public_key())
    ms = handshake.master_secret(shared, psk)
    th2 = crypto.sha256(caps, hello, box_auth[: handshake.BoxAuth.CLEAR_LEN])
    th3 = crypto.sha256(caps, hello, box_auth)
    th4 = crypto.sha256(caps, hello, box_auth, phone_auth)
    p2b, b2p = handshake.traffic_secrets(ms, th4)
    if refuse is not None:
        box.refuse(refuse, 0.0)
        [refusal] = box.data_to_send()
        phone.receive_message(refusal, 0.0)
        return {
            "mode": mode,
            "code": int(refuse),
            "b2p_traffic_secret": b2p.hex(),
            "messages": {
                "hello": hello.hex(),
                "box_auth": box_auth.hex(),
                "phone_auth": phone_auth.hex(),
                "error_record": refusal.hex(),
            },
        }
    box.accept(0.0)
    [accept] = box.data_to_send()
    phone.receive_message(accept, 0.0)
    phone.send_message(b'{"type":"ping","nonce":1}', 0.0)
    [p2b_record] = phone.data_to_send()
    box.send_message(b'{"type":"pong","nonce":1}', 0.0)
    [b2p_record] = box.data_to_send()
    out: dict[str, Any] = {
        "mode": mode,
        "box_public": box_point.hex(),
        "box_key_hash": pin.hex(),
        "phone_public": crypto.encode_public(phone_key).hex(),
        "psk": psk.hex() if psk else None,
        "ecdh_shared": shared.hex(),
        "master_secret": ms.hex(),
        "th2": th2.hex(),
        "th3": th3.hex(),
        "th4": th4.hex(),
        "box_hs_key": crypto.hkdf_expand(ms, b"box hs key", th2).hex(),
        "phone_hs_key": crypto.hkdf_expand(ms, b"phone hs key", th3).hex(),
        "p2b_traffic_secret": p2b.hex(),
        "b2p_traffic_secret": b2p.hex(),
        "p2b_traffic_secret_after_rekey": next_secret(p2b).hex(),
        "messages": {
            "caps_request": req.hex(),
            "caps_response": rsp.hex(),
            "hello": hello.hex(),
            "box_auth": box_auth.hex(),
            "phone_auth": phone_auth.hex(),
            "accept_record": accept.hex(),
            "p2b_data_record": p2b_record.hex(),
            "b2p_data_record": b2p_record.hex(),
        },
    }
    return out


def _records() -> dict[str, Any]:
    sid = bytes.fromhex(INPUTS["session_id"])
    send = bytes(range(32))
    layer = RecordLayer(sid, send, bytes(32), 0.0)
    cases = [
        (RecordType.data, b"hello"),
        (RecordType.data, b""),
        (RecordType.data, bytes(range(256)) * 2),  # 512 bytes: inner 513 -> 640
        (RecordType.keepalive, b""),
        (RecordType.error, int(ErrorCode.phone_revoked).to_bytes(2, "big")),
        (RecordType.rekey, b""),
    ]
    return {
        "session_id": sid.hex(),
        "send_secret": send.hex(),
        "traffic_key": crypto.hkdf_expand(send, b"traffic key").hex(),
        "pad_block": DEFAULT_CONFIG.pad_block,
        "records": [
            {
                "counter": i,
                "type": t.name,
                "content": content.hex(),
                "wire": layer.seal(t, content, 0.0).hex(),
            }
            for i, (t, content) in enumerate(cases)
        ],
    }


def _old_version() -> dict[str, Any]:
    """A v1 phone's capabilities request and the v2 box's answer (it names version 2, then closes)."""
    box = Framer(Role.box, mtu=244, window=96)
    v1_request = bytes((0x20,)) + b"EB" + bytes((1, 1)) + (244).to_bytes(2, "big") + bytes((32,))
    try:
        box.receive_datagram(v1_request)
    except Exception as exc:  # the box fails the link after answering
        code = getattr(exc, "code", "")
    return {"v1_caps_request": v1_request.hex(), "box_answer": box.take_refusal()[0].hex(), "box_error": code}


def _framing() -> dict[str, Any]:
    phone = Framer(Role.phone, mtu=20, window=3)
    box = Framer(Role.box, mtu=244, window=6)
    req = phone.start()
    box.receive_datagram(req)
    [rsp] = box.datagrams_to_send()
    phone.receive_datagram(rsp)
    message = bytes(range(50))
    phone.send_message(message)
    fragments = phone.datagrams_to_send()
    for d in fragments:
        box.receive_datagram(d)
    acks = box.datagrams_to_send()
    return {
        "phone_mtu": 20,
        "phone_window": 3,
        "box_mtu": 244,
        "box_window": 6,
        "caps_request": req.hex(),
        "caps_response": rsp.hex(),
        "message": message.hex(),
        "fragments": [d.hex() for d in fragments],
        "box_acks": [d.hex() for d in acks],
    }


def _invite() -> dict[str, Any]:
    pin = crypto.key_hash(crypto.encode_public(_key(1)))
    inv = PairingInvite(
        bytes.fromhex(INPUTS["box_id"]),
        pin,
        bytes.fromhex(INPUTS["secret_id"]),
        bytes.fromhex(INPUTS["secret"]),
        int(INPUTS["expires_at"]),
    )
    return {"text": inv.encode()}


def generate() -> dict[str, Any]:
    return {
        "description": "edgebox secure session v2 test vectors (see docs/protocol.md); all values hex",
        "protocol_version": PROTOCOL_VERSION,
        "inputs": INPUTS,
        "pairing": _handshake("pairing"),
        "session": _handshake("session"),
        "refused": _handshake("session", refuse=ErrorCode.phone_revoked),
        "records": _records(),
        "framing": _framing(),
        "old_version": _old_version(),
        "invite": _invite(),
    }


if __name__ == "__main__":
    print(json.dumps(generate(), indent=2))
