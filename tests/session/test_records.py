"""Record layer: round trip, replay/reorder/tamper/truncation fail closed, rekeying and hard limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebox.session import records
from edgebox.session.errors import ErrorCode, SessionError
from edgebox.session.records import RecordLayer, RecordType

SID = bytes.fromhex("0102030405060708")
A = bytes(range(32))
B = bytes(range(32, 64))


def pair(now: float = 0.0) -> tuple[RecordLayer, RecordLayer]:
    return RecordLayer(SID, A, B, now), RecordLayer(SID, B, A, now)


def test_round_trip_and_implicit_counters() -> None:
    tx, rx = pair()
    seen = set()
    for i in range(5):
        rec = tx.seal(RecordType.data, b"m%d" % i, 0.0)
        assert rec[0] == RecordType.data and len(rec) == 1 + 2 + 16
        assert rx.open(rec, 0.0) == (RecordType.data, b"m%d" % i)
        seen.add(rec[1:])
    assert len(seen) == 5  # same plaintext length, fresh nonce each time


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
    forged = bytes([0x55]) + rec[1:]
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


def test_rekey_by_record_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "REKEY_AFTER_RECORDS", 4)
    monkeypatch.setattr(records, "HARD_RECORDS", 6)
    tx, rx = pair()
    first_key = tx.send_secret
    for i in range(20):
        for rec in tx.seal_all(RecordType.data, b"%d" % i, 0):
            _kind, data = rx.open(rec, 0)
        assert data == b"%d" % i
    assert tx.rekeys_sent == rx.rekeys_received >= 4
    assert tx.send_secret != first_key


def test_rekey_by_time(monkeypatch: pytest.MonkeyPatch) -> None:
    tx, rx = pair(now=0.0)
    recs = tx.seal_all(RecordType.data, b"a", records.REKEY_AFTER_SECONDS + 1)
    assert len(recs) == 2 and recs[0][0] == RecordType.rekey
    for rec in recs:
        rx.open(rec, records.REKEY_AFTER_SECONDS + 1)
    assert rx.rekeys_received == 1


def test_old_key_records_rejected_after_rekey() -> None:
    tx, rx = pair()
    shadow = RecordLayer(SID, A, B, 0)  # same keys as tx, but never rekeys
    rekey, data = tx.seal_all(RecordType.data, b"new", records.REKEY_AFTER_SECONDS)
    assert rekey[0] == RecordType.rekey
    shadow.seal(RecordType.rekey, b"", 0)
    shadow.seal(RecordType.data, b"", 0)
    assert rx.open(rekey, 0) == (RecordType.rekey, b"")
    assert rx.open(data, 0) == (RecordType.data, b"new")
    with pytest.raises(SessionError) as e:
        rx.open(shadow.seal(RecordType.data, b"old key", 0), 0)
    assert e.value.wire_code is ErrorCode.auth_failed


def test_peer_overstaying_key_records_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "HARD_RECORDS", 3)
    tx, rx = pair()
    for _ in range(3):
        rx.open(tx.seal(RecordType.data, b"x", 0), 0)
    with pytest.raises(SessionError) as e:
        tx.seal(RecordType.data, b"x", 0)  # the sender refuses to overstay
    assert e.value.wire_code is ErrorCode.rekey_overdue
    # A misbehaving peer that ignores the limit is refused by the receiver.
    rogue = RecordLayer(SID, A, B, 0)
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
        rx.open(rec, records.HARD_SECONDS + 1)
    assert e.value.wire_code is ErrorCode.rekey_overdue


def test_counter_exhaustion(monkeypatch: pytest.MonkeyPatch) -> None:
    tx, _ = pair()
    tx._s_counter = records.MAX_COUNTER
    with pytest.raises(SessionError) as e:
        tx.seal(RecordType.data, b"x", 0)
    assert e.value.wire_code is ErrorCode.counter_exhausted


def test_short_record() -> None:
    _, rx = pair()
    with pytest.raises(SessionError) as e:
        rx.open(b"\x10" * 16, 0)
    assert e.value.wire_code is ErrorCode.malformed
