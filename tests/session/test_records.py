"""Record layer: round trip, padding, replay/reorder/tamper fail closed, rekeying, limits, clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebox.session import records
from edgebox.session.config import SessionConfig
from edgebox.session.errors import ErrorCode, LocalProtocolError, RemoteProtocolError, SessionError
from edgebox.session.records import RecordLayer, RecordType

SID = bytes.fromhex("0102030405060708")
A = bytes(range(32))
B = bytes(range(32, 64))


CFG = SessionConfig()


def pair(now: float = 0.0, config: SessionConfig = CFG) -> tuple[RecordLayer, RecordLayer]:
    return RecordLayer(SID, A, B, now, config), RecordLayer(SID, B, A, now, config)


def test_round_trip_and_implicit_counters() -> None:
    tx, rx = pair()
    seen = set()
    for i in range(5):
        rec = tx.seal(RecordType.data, b"m%d" % i, 0.0)
        assert rec[0] == 0x17 and len(rec) == 1 + 128 + 16  # padded to one block
        assert rx.open(rec, 0.0) == (RecordType.data, b"m%d" % i)
        seen.add(rec[1:])
    assert len(seen) == 5  # same plaintext length, fresh nonce each time


@given(st.binary(max_size=1200), st.sampled_from([1, 16, 128, 256]))
@settings(max_examples=60, deadline=None)
def test_padding_to_buckets_round_trips(content: bytes, block: int) -> None:
    """Content of any length, including trailing zero bytes, survives; length reveals only the bucket."""
    tx, rx = pair(config=SessionConfig(pad_block=block))
    rec = tx.seal(RecordType.data, content, 0)
    assert (len(rec) - 17) % block == 0 and len(rec) - 17 - len(content) - 1 < block
    assert rx.open(rec, 0) == (RecordType.data, content)


def test_record_types_are_hidden_inside_the_aead() -> None:
    tx, _ = pair()
    sealed = [
        tx.seal(t, c, 0)
        for t, c in [
            (RecordType.data, b'{"type":"pong","nonce":7}'),
            (RecordType.keepalive, b""),
            (RecordType.accept, b""),
            (RecordType.error, b"\x00\x09"),
            (RecordType.rekey, b""),
        ]
    ]
    assert {r[0] for r in sealed} == {0x17} and {len(r) for r in sealed} == {145}


def test_maximum_content_is_padded_only_up_to_the_record_limit() -> None:
    tx, rx = pair()
    big = bytes(records.MAX_CONTENT)
    rec = tx.seal(RecordType.data, big, 0)
    assert len(rec) == records.MAX_RECORD
    assert rx.open(rec, 0) == (RecordType.data, big)
    with pytest.raises(LocalProtocolError) as e:
        tx.seal(RecordType.data, bytes(records.MAX_CONTENT + 1), 0)
    assert e.value.wire_code is ErrorCode.oversize


def test_error_record_carries_a_code_and_ends_the_peer() -> None:
    tx, rx = pair()
    sealed = tx.seal_error(ErrorCode.phone_revoked, 0)
    assert sealed is not None
    kind, content = rx.open(sealed, 0)
    assert kind is RecordType.error and records.decode_error_code(content) is ErrorCode.phone_revoked
    with pytest.raises(RemoteProtocolError) as e:
        rx.open(tx.seal(RecordType.data, b"after", 0), 0)
    assert e.value.wire_code is ErrorCode.unexpected_message
    _, rx2 = pair()
    with pytest.raises(RemoteProtocolError):  # an ERROR whose content is not 2 bytes
        rx2.open(RecordLayer(SID, A, B, 0).seal(RecordType.error, b"\x00", 0), 0)


def test_a_record_without_a_type_is_malformed() -> None:
    tx, rx = pair()
    forged = records._HEADER + tx._s_encrypt(bytes(12), bytes(128), tx._aad)  # all-zero inner
    with pytest.raises(RemoteProtocolError) as e:
        rx.open(forged, 0)
    assert e.value.wire_code is ErrorCode.malformed


def test_timer_rekeys_an_idle_sender_and_keeps_it_alive() -> None:
    """The clock (next_deadline/handle_timer): an idle send side rekeys at rekey_after_s and sends
    a KEEPALIVE after keepalive_s of silence, so it never reaches the hard limits."""
    cfg = SessionConfig(rekey_after_s=600, hard_s=900, keepalive_s=120)
    tx, rx = pair(config=cfg)
    assert tx.next_deadline() == 120
    [ka] = tx.handle_timer(120)
    assert rx.open(ka, 120) == (RecordType.keepalive, b"")
    assert tx.handle_timer(121) == []  # nothing due
    now = 0.0
    while now < 3 * 3600:  # three idle hours
        now = tx.next_deadline()
        for rec in tx.handle_timer(now):
            rx.open(rec, now)
    assert tx.rekeys_sent == rx.rekeys_received >= 17
    assert rx.open(tx.seal(RecordType.data, b"still here", now + 1), now + 1) == (
        RecordType.data,
        b"still here",
    )


def test_same_plaintext_never_repeats_ciphertext() -> None:
    tx, _ = pair()
    assert tx.seal(RecordType.data, b"same", 0) != tx.seal(RecordType.data, b"same", 0)


def test_replay_is_refused() -> None:
    tx, rx = pair()
    r0 = tx.seal(RecordType.data, b"a", 0)
    rx.open(r0, 0)
    with pytest.raises(SessionError) as e:
        rx.open(r0, 0)
    assert e.value.wire_code is ErrorCode.replay
    assert rx.failed


def test_reorder_and_drop_are_refused() -> None:
    tx, rx = pair()
    tx.seal(RecordType.data, b"a", 0)
    r1 = tx.seal(RecordType.data, b"b", 0)
    with pytest.raises(SessionError) as e:
        rx.open(r1, 0)
    assert e.value.wire_code is ErrorCode.reorder


def test_failed_layer_refuses_everything_after() -> None:
    tx, rx = pair()
    good = tx.seal(RecordType.data, b"a", 0)
    with pytest.raises(SessionError):
        rx.open(good[:-1] + bytes([good[-1] ^ 1]), 0)
    with pytest.raises(SessionError) as e:
        rx.open(good, 0)
    assert e.value.wire_code is ErrorCode.closed


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=300), bit=st.integers(min_value=0))
def test_any_bit_flip_is_rejected(payload: bytes, bit: int) -> None:
    tx, rx = pair()
    rec = bytearray(tx.seal(RecordType.data, payload, 0))
    bit %= len(rec) * 8
    rec[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(SessionError):
        rx.open(bytes(rec), 0)


@settings(max_examples=100, deadline=None)
@given(payload=st.binary(min_size=1, max_size=300), cut=st.integers(min_value=1))
def test_truncation_is_rejected(payload: bytes, cut: int) -> None:
    tx, rx = pair()
    rec = tx.seal(RecordType.data, payload, 0)
    with pytest.raises(SessionError):
        rx.open(rec[: len(rec) - 1 - cut % len(rec)], 0)


def test_record_from_another_session_is_rejected() -> None:
    tx = RecordLayer(bytes(8), A, B, 0)
    rx = RecordLayer(SID, B, A, 0)
    with pytest.raises(SessionError) as e:
        rx.open(tx.seal(RecordType.data, b"x", 0), 0)
    assert e.value.wire_code is ErrorCode.auth_failed


def test_wrong_direction_key_is_rejected() -> None:
    tx, _ = pair()
    rx_same_dir = RecordLayer(SID, A, B, 0)  # receives with A's *receive* secret B: wrong
    with pytest.raises(SessionError):
        rx_same_dir.open(tx.seal(RecordType.data, b"x", 0), 0)


def test_unknown_record_type_and_control_payload_rejected() -> None:
    tx, rx = pair()
    rec = tx.seal(RecordType.data, b"x", 0)
    forged = bytes([0x55]) + rec[1:]  # not the record header
    with pytest.raises(SessionError) as e:
        rx.open(forged, 0)
    assert e.value.wire_code is ErrorCode.malformed
    tx, rx = pair()
    with pytest.raises(SessionError):
        rx.open(tx.seal(RecordType.close, b"not empty", 0), 0)


def test_close_then_anything_is_refused() -> None:
    tx, rx = pair()
    rx.open(tx.seal(RecordType.close, b"", 0), 0)
    assert rx.closed_by_peer
    with pytest.raises(SessionError):
        rx.open(tx.seal(RecordType.data, b"late", 0), 0)


def test_rekey_by_record_count() -> None:
    tx, rx = pair(config=SessionConfig(rekey_after_records=4, hard_records=6))
    first_key = tx.send_secret
    for i in range(20):
        for rec in tx.seal_all(RecordType.data, b"%d" % i, 0):
            _kind, data = rx.open(rec, 0)
        assert data == b"%d" % i
    assert tx.rekeys_sent == rx.rekeys_received >= 4
    assert tx.send_secret != first_key


def test_rekey_by_time() -> None:
    tx, rx = pair(now=0.0)
    recs = tx.seal_all(RecordType.data, b"a", CFG.rekey_after_s + 1)
    assert len(recs) == 2 and rx.open(recs[0], CFG.rekey_after_s + 1) == (RecordType.rekey, b"")
    for rec in recs[1:]:
        rx.open(rec, CFG.rekey_after_s + 1)
    assert rx.rekeys_received == 1


def test_old_key_records_rejected_after_rekey() -> None:
    tx, rx = pair()
    shadow = RecordLayer(SID, A, B, 0)  # same keys as tx, but never rekeys
    rekey, data = tx.seal_all(RecordType.data, b"new", CFG.rekey_after_s)
    shadow.seal(RecordType.rekey, b"", 0)
    shadow.seal(RecordType.data, b"", 0)
    assert rx.open(rekey, 0) == (RecordType.rekey, b"")
    assert rx.open(data, 0) == (RecordType.data, b"new")
    with pytest.raises(SessionError) as e:
        rx.open(shadow.seal(RecordType.data, b"old key", 0), 0)
    assert e.value.wire_code is ErrorCode.auth_failed


def test_peer_overstaying_key_records_fails_closed() -> None:
    cfg = SessionConfig(rekey_after_records=2, hard_records=3)
    tx, rx = pair(config=cfg)
    for _ in range(3):
        rx.open(tx.seal(RecordType.data, b"x", 0), 0)
    with pytest.raises(SessionError) as e:
        tx.seal(RecordType.data, b"x", 0)  # the sender refuses to overstay
    assert e.value.wire_code is ErrorCode.rekey_overdue
    # A misbehaving peer that ignores the limit is refused by the receiver.
    rogue = RecordLayer(SID, A, B, 0, cfg)
    rogue._s_limit = 10**9
    for _ in range(3):
        rogue.seal(RecordType.data, b"x", 0)
    with pytest.raises(SessionError) as e:
        rx.open(rogue.seal(RecordType.data, b"x", 0), 0)
    assert e.value.wire_code is ErrorCode.rekey_overdue


def test_peer_overstaying_key_time_fails_closed() -> None:
    tx, rx = pair()
    rec = tx.seal(RecordType.data, b"x", 0)
    with pytest.raises(SessionError) as e:
        rx.open(rec, CFG.hard_s + 1)
    assert e.value.wire_code is ErrorCode.rekey_overdue


def test_counter_exhaustion() -> None:
    tx, _ = pair()
    tx._s_counter = CFG.max_records
    with pytest.raises(SessionError) as e:
        tx.seal(RecordType.data, b"x", 0)
    assert e.value.wire_code is ErrorCode.counter_exhausted


def test_short_record() -> None:
    _, rx = pair()
    with pytest.raises(SessionError) as e:
        rx.open(b"\x17" * 16, 0)
    assert e.value.wire_code is ErrorCode.malformed
