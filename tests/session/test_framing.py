"""Framing: capabilities, fragmentation/reassembly, windowed acks, and fail-closed range checks."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebox.session.errors import ErrorCode, RemoteProtocolError, SessionError
from edgebox.session.framing import (
    FLAG_ACK,
    FLAG_BEGIN,
    FLAG_CAPS,
    FLAG_DATA,
    FLAG_END,
    MAX_MESSAGE,
    Framer,
    FramerState,
    Role,
)


def opened(
    mtu_phone: int = 64, mtu_box: int = 64, win_phone: int = 4, win_box: int = 4
) -> tuple[Framer, Framer]:
    phone = Framer(Role.phone, mtu_phone, win_phone)
    box = Framer(Role.box, mtu_box, win_box)
    assert box.receive_datagram(phone.start()) == []
    for d in box.datagrams_to_send():
        phone.receive_datagram(d)
    assert phone.is_open and box.is_open
    return phone, box


def pump(a: Framer, b: Framer) -> tuple[list[bytes], list[bytes]]:
    """Exchange datagrams until both are quiet; return messages received by (a, b)."""
    got_a: list[bytes] = []
    got_b: list[bytes] = []
    for _ in range(100_000):
        da, db = a.datagrams_to_send(), b.datagrams_to_send()
        if not da and not db:
            return got_a, got_b
        for d in da:
            got_b += b.receive_datagram(d)
        for d in db:
            got_a += a.receive_datagram(d)
    raise AssertionError("no quiescence")


def test_capabilities_agree_on_smaller_mtu_and_windows() -> None:
    phone, box = opened(mtu_phone=100, mtu_box=60, win_phone=5, win_box=7)
    assert phone.mtu == box.mtu == 60
    assert phone.peer_window == 7 and box.peer_window == 5


def test_state_transitions() -> None:
    phone = Framer(Role.phone, 64)
    box = Framer(Role.box, 64)
    assert phone.state is FramerState.idle and box.state is FramerState.await_caps
    req = phone.start()
    assert phone.state is FramerState.await_caps
    with pytest.raises(SessionError):
        phone.start()  # only once
    box.receive_datagram(req)
    assert box.state is FramerState.open
    [rsp] = box.datagrams_to_send()
    phone.receive_datagram(rsp)
    assert phone.state is FramerState.open
    with pytest.raises(SessionError) as e:
        phone.receive_datagram(rsp)  # a second capabilities datagram
    assert e.value.wire_code is ErrorCode.unexpected_message
    assert phone.state is FramerState.failed
    with pytest.raises(SessionError) as e:
        phone.send_message(b"x")
    assert e.value.wire_code is ErrorCode.closed


def test_data_before_capabilities_is_refused() -> None:
    box = Framer(Role.box, 64)
    with pytest.raises(SessionError) as e:
        box.receive_datagram(bytes((FLAG_DATA | FLAG_BEGIN | FLAG_END, 0, 0, 1, 0x41)))
    assert e.value.wire_code is ErrorCode.unexpected_message


@pytest.mark.parametrize(
    "mutate, code",
    [
        (lambda r: r[:-1], ErrorCode.malformed),  # short
        (lambda r: r[:1] + b"XX" + r[3:], ErrorCode.malformed),  # magic
        (lambda r: r[:3] + b"\x01\x01" + r[5:], ErrorCode.unsupported_version),  # a v1 phone
        (lambda r: r[:3] + b"\x03\x03" + r[5:], ErrorCode.unsupported_version),
        (lambda r: r[:5] + struct.pack(">H", 19) + r[7:], ErrorCode.malformed),  # mtu too small
        (lambda r: r[:5] + struct.pack(">H", 513) + r[7:], ErrorCode.malformed),  # mtu too big
        (lambda r: r[:7] + b"\x00", ErrorCode.malformed),  # window 0 (chip #73099)
        (lambda r: r[:7] + b"\x01", ErrorCode.malformed),  # window 1
        (lambda r: r[:7] + b"\xff", ErrorCode.malformed),  # window 255
    ],
)
def test_bad_capabilities_request(mutate, code) -> None:  # type: ignore[no-untyped-def]
    req = Framer(Role.phone, 64).start()
    box = Framer(Role.box, 64)
    with pytest.raises(SessionError) as e:
        box.receive_datagram(mutate(req))
    assert e.value.wire_code is code
    assert box.state is FramerState.failed


def test_v1_phone_gets_an_answer_naming_version_2_then_the_box_fails() -> None:
    """An old-version peer gets a clear typed refusal: the box still answers (v1's response layout,
    version byte 2) so a v1 phone fails with unsupported_version instead of seeing the link drop."""
    box = Framer(Role.box, 244)
    v1_request = struct.pack(">B2sBBHB", FLAG_CAPS, b"EB", 1, 1, 244, 32)
    with pytest.raises(RemoteProtocolError) as e:
        box.receive_datagram(v1_request)
    assert e.value.wire_code is ErrorCode.unsupported_version
    [answer] = box.take_refusal()
    flags, magic, version, _mtu, _window = struct.unpack(">B2sBHB", answer)  # what a v1 phone parses
    assert (flags, magic, version) == (FLAG_CAPS, b"EB", 2)
    # ...and a v2 phone given a v1 box's answer refuses it the same way.
    phone = Framer(Role.phone, 244)
    phone.start()
    with pytest.raises(RemoteProtocolError) as e:
        phone.receive_datagram(struct.pack(">B2sBHB", FLAG_CAPS, b"EB", 1, 244, 32))
    assert e.value.wire_code is ErrorCode.unsupported_version


def test_capabilities_bytes_are_exposed_for_the_transcript() -> None:
    phone, box = Framer(Role.phone, 100, window=10), Framer(Role.box, 80, window=12)
    req = phone.start()
    box.receive_datagram(req)
    [rsp] = box.datagrams_to_send()
    phone.receive_datagram(rsp)
    assert phone.capabilities == box.capabilities == req + rsp and len(req + rsp) == 15


def test_held_acks_still_process_the_peers_acks() -> None:
    """hold_acks stops granting the peer window, never stops us reading acks for our own data."""
    phone, box = opened(mtu_phone=20, mtu_box=20, win_phone=4, win_box=4)
    box.hold_acks = True
    box.send_message(b"x" * 60)  # several fragments, more than the phone's window
    sent = box.datagrams_to_send()
    assert box.in_flight == 4
    phone.send_message(b"ping")
    for d in sent:
        phone.receive_datagram(d)
    for d in phone.datagrams_to_send():  # the phone's ping carries its ack for our fragments
        box.receive_datagram(d)
    assert box.in_flight == 0  # our window reopened although we hold acks
    assert all(not (d[0] & 0x04) for d in box.datagrams_to_send())  # and we granted none
    box.hold_acks = False
    assert any(d[0] & 0x04 for d in box.datagrams_to_send())


def test_box_choosing_bigger_mtu_is_refused() -> None:
    phone = Framer(Role.phone, 40)
    phone.start()
    with pytest.raises(SessionError):
        phone.receive_datagram(struct.pack(">B2sBHB", FLAG_CAPS, b"EB", 2, 41, 4))


def test_single_and_multi_fragment_messages() -> None:
    phone, box = opened(mtu_phone=20, mtu_box=20)
    phone.send_message(b"a")
    phone.send_message(bytes(range(256)) * 3)
    _, got = pump(phone, box)
    assert got == [b"a", bytes(range(256)) * 3]


def test_max_message_size_and_oversize() -> None:
    phone, box = opened(mtu_phone=512, mtu_box=512, win_phone=64, win_box=64)
    big = random.Random(1).randbytes(MAX_MESSAGE)
    phone.send_message(big)
    assert pump(phone, box)[1] == [big]
    with pytest.raises(SessionError) as e:
        phone.send_message(b"x" * (MAX_MESSAGE + 1))
    assert e.value.wire_code is ErrorCode.oversize
    with pytest.raises(SessionError):
        Framer(Role.phone, 64).send_message(b"")


def test_window_limits_in_flight_and_acks_release_it() -> None:
    phone, box = opened(mtu_phone=20, mtu_box=20, win_box=3)
    phone.send_message(b"x" * 200)  # ~12 fragments
    first = phone.datagrams_to_send()
    assert len(first) == 3 and phone.in_flight == 3
    assert phone.datagrams_to_send() == []  # window full
    for d in first:
        box.receive_datagram(d)
    acks = box.datagrams_to_send()
    assert acks == [bytes((FLAG_ACK, 2))]
    phone.receive_datagram(acks[0])
    assert phone.in_flight == 0
    assert len(phone.datagrams_to_send()) == 3


def test_acks_piggyback_on_data() -> None:
    phone, box = opened(mtu_phone=20, mtu_box=20, win_box=8, win_phone=8)
    phone.send_message(b"x" * 5)
    [d] = phone.datagrams_to_send()
    box.receive_datagram(d)
    box.send_message(b"reply")
    out = box.datagrams_to_send()
    assert len(out) == 1 and out[0][0] & FLAG_ACK and out[0][0] & FLAG_DATA
    phone.receive_datagram(out[0])
    assert phone.in_flight == 0


def test_peer_exceeding_window_fails_closed() -> None:
    _phone, box = opened(mtu_phone=20, mtu_box=20, win_box=2)
    # Forge fragments beyond the window (a well-behaved sender would stop at 2).
    frags = [bytes((FLAG_DATA | FLAG_BEGIN, 0)) + struct.pack(">H", 100) + b"a"]
    frags += [bytes((FLAG_DATA, i)) + b"b" for i in (1, 2)]
    box.receive_datagram(frags[0])
    box.receive_datagram(frags[1])
    with pytest.raises(SessionError) as e:
        box.receive_datagram(frags[2])
    assert e.value.wire_code is ErrorCode.frame_window


@pytest.mark.parametrize(
    "datagram, code",
    [
        (b"", ErrorCode.malformed),
        (bytes((0x40 | FLAG_DATA, 0)) + b"x", ErrorCode.malformed),  # reserved flag
        (bytes((FLAG_DATA | FLAG_BEGIN | FLAG_END, 1, 0, 1)) + b"x", ErrorCode.frame_sequence),  # seq 1 first
        (bytes((FLAG_DATA | FLAG_END, 0)) + b"x", ErrorCode.malformed),  # continuation w/o begin
        (bytes((FLAG_DATA | FLAG_BEGIN | FLAG_END, 0, 0, 0)) + b"x", ErrorCode.malformed),  # zero length
        (bytes((FLAG_DATA | FLAG_BEGIN | FLAG_END, 0, 0, 2)) + b"x", ErrorCode.malformed),  # short message
        (bytes((FLAG_DATA | FLAG_BEGIN | FLAG_END, 0, 0, 1)) + b"xy", ErrorCode.oversize),  # long message
        (bytes((FLAG_DATA | FLAG_BEGIN, 0, 0, 5)), ErrorCode.malformed),  # no payload
        (bytes((FLAG_DATA | FLAG_BEGIN, 0, 0)), ErrorCode.malformed),  # truncated length
        (bytes((FLAG_DATA,)), ErrorCode.malformed),  # truncated seq
        (bytes((FLAG_ACK, 0)), ErrorCode.frame_sequence),  # ack with nothing in flight
        (bytes((FLAG_ACK,)), ErrorCode.malformed),
        (bytes((FLAG_ACK, 0, 0)), ErrorCode.malformed),  # ack-only must be 2 bytes
        (bytes((FLAG_CAPS,)) + b"EB" + bytes(5), ErrorCode.unexpected_message),
        (b"z" * 65, ErrorCode.oversize),  # above agreed datagram size
    ],
)
def test_malformed_datagrams_fail_closed(datagram: bytes, code: ErrorCode) -> None:
    _, box = opened()
    with pytest.raises(SessionError) as e:
        box.receive_datagram(datagram)
    assert e.value.wire_code is code
    assert box.state is FramerState.failed
    with pytest.raises(SessionError):
        box.receive_datagram(datagram)


def test_begin_inside_message_is_refused() -> None:
    _, box = opened()
    box.receive_datagram(bytes((FLAG_DATA | FLAG_BEGIN, 0, 0, 10)) + b"abc")
    with pytest.raises(SessionError):
        box.receive_datagram(bytes((FLAG_DATA | FLAG_BEGIN, 1, 0, 10)) + b"abc")


def test_sequence_numbers_wrap() -> None:
    phone, box = opened(mtu_phone=20, mtu_box=20, win_box=8, win_phone=8)
    msgs = [bytes([i % 256]) * 30 for i in range(300)]  # 2 fragments each: 600 fragments
    for m in msgs:
        phone.send_message(m)
    assert pump(phone, box)[1] == msgs


def test_flush_ack_for_idle_timer() -> None:
    phone, box = opened(mtu_phone=20, mtu_box=20, win_box=8)
    phone.send_message(b"x" * 40)
    [d1, *_rest] = phone.datagrams_to_send()
    box.receive_datagram(d1)  # one fragment: below the ack threshold, message not complete
    assert box.datagrams_to_send() == []
    ack = box.flush_ack()
    assert ack == bytes((FLAG_ACK, 0))
    assert box.flush_ack() is None


@settings(max_examples=150, deadline=None)
@given(
    messages=st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=8),
    replies=st.lists(st.binary(min_size=1, max_size=500), max_size=4),
    mtu=st.integers(20, 512),
    win_phone=st.integers(2, 127),
    win_box=st.integers(2, 127),
    seed=st.integers(0, 2**32),
)
def test_any_split_and_interleaving_reassembles(messages, replies, mtu, win_phone, win_box, seed) -> None:  # type: ignore[no-untyped-def]
    """Random mtu/windows, random scheduling of who sends and how many datagrams are delivered."""
    rng = random.Random(seed)
    phone, box = opened(mtu, mtu, win_phone, win_box)
    for m in messages:
        phone.send_message(m)
    for r in replies:
        box.send_message(r)
    to_box: list[bytes] = []
    to_phone: list[bytes] = []
    got_box: list[bytes] = []
    got_phone: list[bytes] = []
    for _ in range(200_000):
        choice = rng.random()
        if choice < 0.25:
            to_box += phone.datagrams_to_send()
        elif choice < 0.5:
            to_phone += box.datagrams_to_send()
        elif choice < 0.75 and to_box:
            for _ in range(rng.randint(1, len(to_box))):
                got_box += box.receive_datagram(to_box.pop(0))
        elif to_phone:
            for _ in range(rng.randint(1, len(to_phone))):
                got_phone += phone.receive_datagram(to_phone.pop(0))
        if len(got_box) == len(messages) and len(got_phone) == len(replies):
            break
    assert got_box == messages
    assert got_phone == replies
    # Every datagram respects the agreed size.
    assert phone.in_flight <= win_box and box.in_flight <= win_phone


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600))
def test_fuzz_receive_datagram_only_raises_session_error(data: bytes) -> None:
    for framer in (opened()[1], Framer(Role.box, 64)):
        try:
            framer.receive_datagram(data)
        except SessionError:
            assert framer.state is FramerState.failed
