"""Secure-session benchmark: handshake CPU and record-layer throughput vs raw AES-GCM.

Prints `handshake_ms` (median wall time of a full session-mode handshake with both sides in one
process: ephemeral keygen, 2 ECDH, 2 ECDSA signs and verifies, HKDF, AEAD; a CPU figure since
nothing waits) and `record_vs_raw_aesgcm`: seal+open throughput of 244-byte payloads through the
record layer divided by that of `cryptography`'s AESGCM on the same payloads with the same key
sizes and counter nonces, measured in the same run (median of interleaved per-round ratios).

`padded_overhead_bytes_p50` is what the padding policy costs on the air for a streamed answer sent
token by token (an idle link: one `chunk` record per token, the case the padding exists for): the
median number of padding bytes per record, with `streamed_record_bytes_p50` (what a record weighs
on the wire) and `streamed_padding_ratio` (all record bytes with padding / without) beside it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edgebox.session import crypto
from edgebox.session import messages as app
from edgebox.session.connection import BoxConnection, PhoneConnection
from edgebox.session.framing import Framer, Role
from edgebox.session.records import DATA, OVERHEAD, RecordLayer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--handshakes", type=int, default=300)
    parser.add_argument("--records", type=int, default=2_000, help="records per round")
    parser.add_argument("--rounds", type=int, default=61)
    parser.add_argument("--payload", type=int, default=244)


def _capabilities() -> bytes:
    phone, box = Framer(Role.phone, 244), Framer(Role.box, 244)
    box.receive_datagram(phone.start())
    [rsp] = box.datagrams_to_send()
    phone.receive_datagram(rsp)
    return phone.capabilities


def _one_handshake(box_key: crypto.PrivateKey, phone_key: crypto.PrivateKey, pin: bytes) -> float:
    caps = _capabilities()
    t0 = time.perf_counter()
    phone = PhoneConnection(phone_key, pin, capabilities=caps)
    box = BoxConnection(box_key, capabilities=caps)
    phone.start()
    for m in phone.data_to_send():
        box.receive_message(m, 0.0)
    for m in box.data_to_send():
        phone.receive_message(m, 0.0)
    for m in phone.data_to_send():
        box.receive_message(m, 0.0)
    box.accept(0.0)
    for m in box.data_to_send():
        phone.receive_message(m, 0.0)
    elapsed = time.perf_counter() - t0
    assert phone.established and box.established
    return elapsed


def _records_round(payloads: list[bytes]) -> float:
    sid = os.urandom(8)
    a, b = os.urandom(32), os.urandom(32)
    tx = RecordLayer(sid, a, b, 0.0)
    rx = RecordLayer(sid, b, a, 0.0)
    seal, open_ = tx.seal, rx.open
    data = DATA
    t0 = time.perf_counter()
    for p in payloads:
        open_(seal(data, p, 0.0), 0.0)
    return time.perf_counter() - t0


def _raw_round(payloads: list[bytes]) -> float:
    aead = AESGCM(os.urandom(32))
    aad = os.urandom(20)
    encrypt, decrypt = aead.encrypt, aead.decrypt
    t0 = time.perf_counter()
    for i, p in enumerate(payloads):
        nonce = i.to_bytes(12, "big")
        decrypt(nonce, encrypt(nonce, p, aad), aad)
    return time.perf_counter() - t0


# A streamed answer as an LLM emits it: short word-piece tokens with their leading spaces.
_ANSWER = (
    "The branch can open an account for a new customer today if they bring a photo ID and proof of "
    "address. Savings accounts have no monthly fee; the current account costs 4.50 per month unless "
    "the balance stays above 1,000. Interest is paid quarterly. Would you like me to book an appointment?"
)


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    for word in text.split(" "):
        while len(word) > 6:  # long words come as several pieces
            out.append(word[:4])
            word = word[4:]
        out.append(" " + word)
    return out


def _streamed_padding() -> dict[str, Any]:
    layer = RecordLayer(os.urandom(8), os.urandom(32), os.urandom(32), 0.0)
    overhead: list[int] = []
    wire: list[int] = []
    plain_total = 0
    for seq, token in enumerate(_tokens(_ANSWER)):
        content = app.encode(app.Chunk(id="r1", seq=seq, delta=token))
        record = layer.seal(DATA, content, 0.0)
        unpadded = len(content) + OVERHEAD
        overhead.append(len(record) - unpadded)
        wire.append(len(record))
        plain_total += unpadded
    return {
        "padded_overhead_bytes_p50": statistics.median(overhead),
        "streamed_record_bytes_p50": statistics.median(wire),
        "streamed_padding_ratio": round(sum(wire) / plain_total, 3),
        "streamed_record_lengths_distinct": len(set(wire)),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    box_key, phone_key = crypto.generate_private_key(), crypto.generate_private_key()
    pin = crypto.key_hash(crypto.encode_public(box_key))
    for _ in range(10):
        _one_handshake(box_key, phone_key, pin)
    hs = [_one_handshake(box_key, phone_key, pin) for _ in range(args.handshakes)]

    # Many short interleaved rounds; the figure is the median of per-round ratios, which cancels
    # the slow drifts of a shared, noisy machine better than comparing totals.
    payloads = [os.urandom(args.payload) for _ in range(args.records)]
    ratios: list[float] = []
    rec_times: list[float] = []
    raw_times: list[float] = []
    for i in range(args.rounds):
        if i % 2:  # alternate the order so neither side always runs on a warmer cache
            rec_t = _records_round(payloads)
            raw_t = _raw_round(payloads)
        else:
            raw_t = _raw_round(payloads)
            rec_t = _records_round(payloads)
        raw_times.append(raw_t)
        rec_times.append(rec_t)
        ratios.append(raw_t / rec_t)
    raw, rec = statistics.median(raw_times), statistics.median(rec_times)
    n = len(payloads)
    return {
        "handshake_ms": round(statistics.median(hs) * 1000, 3),
        "handshake_ms_p90": round(sorted(hs)[int(len(hs) * 0.9)] * 1000, 3),
        "record_vs_raw_aesgcm": round(statistics.median(ratios), 3),
        "record_seal_open_us": round(rec / n * 1e6, 3),
        "raw_aesgcm_seal_open_us": round(raw / n * 1e6, 3),
        "record_mib_s": round(n * args.payload / rec / 2**20, 1),
        "payload_bytes": args.payload,
        **_streamed_padding(),
    }
