"""Handshake state machines: pairing, session, MITM, invalid points, refusals, every transition."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebox.session import crypto, handshake
from edgebox.session.connection import (
    BoxConnection,
    MessageReceived,
    PairingSecretRequested,
    PeerClosed,
    PeerError,
    PhoneAuthenticated,
    PhoneConnection,
    SessionEstablished,
    State,
)
from edgebox.session.errors import ErrorCode, LocalProtocolError, RemoteProtocolError, SessionError
from edgebox.session.handshake import Hello, Mode
from tests.session.util import CAPS, Pair, deliver, establish

P256_P = 2**256 - 2**224 + 2**192 + 2**96 - 1


def test_pairing_walks_every_state() -> None:
    p = Pair()
    phone, box = p.pairing()
    assert phone.state is State.start and box.state is State.await_hello
    phone.start()
    assert phone.state is State.hello_sent
    [ev] = deliver(phone, box)
    assert ev == PairingSecretRequested(p.invite.secret_id)
    assert box.state is State.await_secret
    box.provide_secret(p.invite.psk())
    assert box.state is State.auth_sent
    assert deliver(box, phone) == []
    assert phone.state is State.auth_sent
    [ev] = deliver(phone, box)
    assert isinstance(ev, PhoneAuthenticated) and ev.pairing
    assert ev.phone_key == crypto.encode_public(p.phone_key)
    assert box.state is State.await_decision
    [est] = box.accept(0)
    assert isinstance(est, SessionEstablished) and box.state is State.established
    [est2] = deliver(box, phone)
    assert isinstance(est2, SessionEstablished) and phone.state is State.established
    assert est.session_id == est2.session_id and len(est.session_id) == 8
    assert est2.peer_key == crypto.encode_public(p.box_key)
    phone.send_message(b"ping", 0)
    assert deliver(phone, box) == [MessageReceived(b"ping")]
    box.send_message(b"pong", 0)
    assert deliver(box, phone) == [MessageReceived(b"pong")]
    phone.close(0)
    assert phone.state is State.closed
    assert deliver(phone, box) == [PeerClosed()]
    assert box.state is State.closed
    with pytest.raises(SessionError):
        box.send_message(b"x", 0)


def test_session_mode_needs_no_secret() -> None:
    p = Pair()
    phone, box = p.session()
    phone.start()
    assert deliver(phone, box) == []  # no secret requested
    assert box.state is State.auth_sent
    deliver(box, phone)
    [ev] = deliver(phone, box)
    assert isinstance(ev, PhoneAuthenticated) and not ev.pairing


def test_phone_identity_is_never_in_clear() -> None:
    p = Pair()
    phone, box = p.pairing()
    phone_point = crypto.encode_public(p.phone_key)
    wire: list[bytes] = []
    phone.start()
    for m in phone.data_to_send():
        wire.append(m)
        box.receive_message(m, 0)
    box.provide_secret(p.invite.psk())
    for m in box.data_to_send():
        wire.append(m)
        phone.receive_message(m, 0)
    for m in phone.data_to_send():
        wire.append(m)
        box.receive_message(m, 0)
    blob = b"".join(wire)
    assert phone_point not in blob and phone_point[1:33] not in blob
    assert p.invite.secret not in blob


def test_wrong_pairing_secret_fails_both_sides() -> None:
    p = Pair()
    phone = PhoneConnection(
        p.phone_key, p.box_hash, capabilities=CAPS, pairing_secret=(p.invite.secret_id, b"\x00" * 16)
    )
    box = BoxConnection(p.box_key, capabilities=CAPS)
    phone.start()
    deliver(phone, box)
    box.provide_secret(p.invite.psk())
    with pytest.raises(SessionError) as e:
        deliver(box, phone)
    assert e.value.wire_code is ErrorCode.pairing_secret_invalid
    assert phone.state is State.failed
    # The phone tells the box (in plaintext: it has no keys); the box fails on the ERROR, and
    # nothing was proved, so nothing counts against the secret.
    [ev] = deliver(phone, box)
    assert ev == PeerError(ErrorCode.pairing_secret_invalid)
    assert box.state is State.failed and not box.failed_proof


def test_attacker_without_secret_cannot_complete_pairing() -> None:
    """Someone who knows the secret id (public) but not the secret cannot forge PHONE_AUTH."""
    p = Pair()
    box = BoxConnection(p.box_key, capabilities=CAPS)
    eph = crypto.generate_private_key()
    hello = Hello(Mode.pairing, bytes(32), crypto.encode_public(eph), p.invite.secret_id).encode()
    box.receive_message(hello, 0)
    box.provide_secret(p.invite.psk())
    [box_auth] = box.data_to_send()
    # Attacker derives keys with a guessed psk and seals its own identity.
    shared = crypto.ecdh(eph, crypto.decode_public(box_auth[41:106]))
    ms = handshake.master_secret(shared, handshake.pairing_psk(bytes(16)))
    th3 = crypto.sha256(CAPS, hello, box_auth)
    atk = crypto.generate_private_key()
    forged = bytes((0x03,)) + handshake.seal_identity(ms, b"phone", th3, atk, crypto.encode_public(atk))
    with pytest.raises(SessionError) as e:
        box.receive_message(forged, 0)
    assert e.value.wire_code is ErrorCode.auth_failed
    assert box.failed_proof  # the one event that may count against the secret
    # The answer to PHONE_AUTH is always a record (here an ERROR record), never plaintext.
    [answer] = box.data_to_send()
    assert answer[0] == 0x17 and len(answer) == 1 + 128 + 16


def _box_answers(psk: bytes | None, p: Pair) -> tuple[list[int], list[int]]:
    """Lengths and first bytes of what the box sends to a stranger who names `secret_id`."""
    box = BoxConnection(p.box_key, capabilities=CAPS)
    eph = crypto.generate_private_key()
    hello = Hello(Mode.pairing, bytes(32), crypto.encode_public(eph), p.invite.secret_id).encode()
    [ev] = box.receive_message(hello, 0)
    assert isinstance(ev, PairingSecretRequested)
    box.provide_secret(psk)
    [box_auth] = box.data_to_send()
    with pytest.raises(SessionError) as e:
        box.receive_message(bytes((0x03,)) + bytes(177), 0)  # a guess that does not verify
    assert e.value.wire_code is ErrorCode.auth_failed
    sent = [box_auth, *box.data_to_send()]
    return [len(m) for m in sent], [m[0] for m in sent]


def test_unknown_secret_id_is_answered_exactly_like_a_wrong_secret() -> None:
    """No oracle: an unknown, expired, used or locked id (psk None) gets the same BOX_AUTH and the
    same encrypted answer to a guess as a live id with a wrong secret (v1 refused it at once)."""
    p = Pair()
    assert _box_answers(None, p) == _box_answers(p.invite.psk(), p)
    # The real phone with that (dead) code reports a typed refusal, not a hang.
    phone, box = p.pairing()
    phone.start()
    deliver(phone, box)
    box.provide_secret(None)
    with pytest.raises(SessionError) as e:
        deliver(box, phone)
    assert e.value.wire_code is ErrorCode.pairing_secret_invalid
    assert phone.state is State.failed


def test_mitm_with_own_key_is_detected_in_session_mode() -> None:
    p = Pair()
    mitm = crypto.generate_private_key()
    phone = PhoneConnection(p.phone_key, p.box_hash, capabilities=CAPS)
    box = BoxConnection(mitm, capabilities=CAPS)  # attacker answers with its own (validly signing) key
    phone.start()
    deliver(phone, box)
    with pytest.raises(SessionError) as e:
        deliver(box, phone)
    assert e.value.wire_code is ErrorCode.box_key_mismatch


def test_mitm_in_pairing_mode_cannot_even_decrypt() -> None:
    p = Pair()
    mitm = crypto.generate_private_key()
    phone, _ = p.pairing()
    box = BoxConnection(mitm, capabilities=CAPS)
    phone.start()
    deliver(phone, box)
    box.provide_secret(handshake.pairing_psk(bytes(16)))  # MITM does not know it
    with pytest.raises(SessionError) as e:
        deliver(box, phone)
    # The phone cannot tell a MITM from a dead code; it says so without blaming either.
    assert e.value.wire_code is ErrorCode.pairing_secret_invalid


def test_box_signature_over_transcript_is_checked() -> None:
    """Splice: a BOX_AUTH from another handshake (other phone ephemeral) does not verify."""
    p = Pair()
    phone1, box1 = p.session()
    phone2, box2 = p.session()
    phone1.start()
    phone2.start()
    deliver(phone1, box1)
    deliver(phone2, box2)
    [auth_for_2] = box2.data_to_send()
    with pytest.raises(SessionError) as e:
        phone1.receive_message(auth_for_2, 0)
    assert e.value.wire_code is ErrorCode.auth_failed


def test_refused_phone_gets_typed_error() -> None:
    for code in (ErrorCode.phone_unknown, ErrorCode.phone_revoked):
        p = Pair()
        phone, box = p.session()
        phone.start()
        deliver(phone, box)
        deliver(box, phone)
        deliver(phone, box)
        box.refuse(code)
        assert box.state is State.failed
        [ev] = deliver(box, phone)
        assert ev == PeerError(code)


def _invalid_points() -> list[bytes]:
    good = crypto.encode_public(crypto.generate_private_key())
    x = good[1:33]
    y = int.from_bytes(good[33:], "big")
    return [
        b"\x04" + bytes(64),  # (0, 0): "infinity" as some encoders write it
        b"\x04" + x + ((y + 1) % P256_P).to_bytes(32, "big"),  # off the curve
        b"\x04" + (P256_P + 1).to_bytes(32, "big") + good[33:],  # x >= p
        b"\x02" + x + bytes(32),  # compressed prefix
        b"\x00" * 65,
    ]


@pytest.mark.parametrize("bad", _invalid_points())
def test_invalid_curve_points_in_hello_are_refused(bad: bytes) -> None:
    box = BoxConnection(crypto.generate_private_key(), capabilities=CAPS)
    hello = bytes((0x01, 2, 1)) + bytes(32) + bad
    with pytest.raises(SessionError) as e:
        box.receive_message(hello, 0)
    assert e.value.wire_code is ErrorCode.invalid_point


@pytest.mark.parametrize("bad", _invalid_points())
def test_invalid_curve_points_in_box_auth_are_refused(bad: bytes) -> None:
    p = Pair()
    phone, box = p.session()
    phone.start()
    deliver(phone, box)
    [auth] = box.data_to_send()
    forged = auth[:41] + bad + auth[106:]
    with pytest.raises(SessionError) as e:
        phone.receive_message(forged, 0)
    assert e.value.wire_code is ErrorCode.invalid_point


def test_invalid_identity_point_inside_sealed_identity() -> None:
    p = Pair()
    phone, box = p.session()
    phone.start()
    [hello] = phone.data_to_send()
    box.receive_message(hello, 0)
    [auth] = box.data_to_send()
    phone.receive_message(auth, 0)
    # Re-derive the phone's handshake key as the phone would and seal an invalid point.
    shared = crypto.ecdh(phone._eph, crypto.decode_public(auth[41:106]))
    ms = handshake.master_secret(shared, None)
    th3 = crypto.sha256(CAPS, hello, auth)
    bad = _invalid_points()[1]
    forged = bytes((0x03,)) + handshake.seal_identity(ms, b"phone", th3, p.phone_key, bad)
    with pytest.raises(SessionError) as e:
        box.receive_message(forged, 0)
    assert e.value.wire_code is ErrorCode.invalid_point


def test_unexpected_messages_in_each_state() -> None:
    p = Pair()
    phone, box = p.pairing()
    # Box awaiting HELLO gets PHONE_AUTH.
    with pytest.raises(SessionError) as e:
        BoxConnection(p.box_key, capabilities=CAPS).receive_message(bytes((0x03,)) + bytes(177), 0)
    assert e.value.wire_code is ErrorCode.malformed
    # Phone before start gets anything.
    with pytest.raises(SessionError) as e:
        PhoneConnection(p.phone_key, p.box_hash, capabilities=CAPS).receive_message(b"\x02" + bytes(10), 0)
    assert e.value.wire_code is ErrorCode.unexpected_message
    # Box awaiting the secret gets another message.
    phone.start()
    deliver(phone, box)
    with pytest.raises(SessionError) as e:
        box.receive_message(b"\x01", 0)
    assert e.value.wire_code is ErrorCode.unexpected_message
    # accept()/refuse() without a phone awaiting a decision.
    with pytest.raises(SessionError):
        BoxConnection(p.box_key, capabilities=CAPS).accept(0)
    with pytest.raises(LocalProtocolError):
        box.refuse(ErrorCode.phone_unknown)  # awaiting the secret: nothing to refuse
    with pytest.raises(SessionError):
        BoxConnection(p.box_key, capabilities=CAPS).provide_secret(b"x" * 32)
    # Sending application data before establishment.
    with pytest.raises(SessionError):
        PhoneConnection(p.phone_key, p.box_hash, capabilities=CAPS).send_message(b"x", 0)


def test_phone_refuses_data_record_before_accept() -> None:
    p = Pair()
    phone, box = p.session()
    phone.start()
    deliver(phone, box)
    deliver(box, phone)
    deliver(phone, box)
    box.state = State.established  # a box skipping ACCEPT (forged state)
    box.send_message(b"early", 0)
    with pytest.raises(SessionError) as e:
        deliver(box, phone)
    assert e.value.wire_code is ErrorCode.unexpected_message


def test_replayed_handshake_message_in_established_session() -> None:
    p = Pair()
    phone, box = p.session()
    phone.start()
    [hello] = phone.data_to_send()
    box.receive_message(hello, 0)
    deliver(box, phone)
    deliver(phone, box)
    box.accept(0)
    deliver(box, phone)
    with pytest.raises(SessionError):
        box.receive_message(hello, 0)


def test_hello_version_and_mode_checks() -> None:
    eph = crypto.encode_public(crypto.generate_private_key())
    with pytest.raises(SessionError) as e:
        BoxConnection(crypto.generate_private_key(), capabilities=CAPS).receive_message(
            bytes((1, 1, 1)) + bytes(32) + eph, 0
        )
    assert e.value.wire_code is ErrorCode.unsupported_version  # a v1 HELLO
    with pytest.raises(SessionError) as e:
        BoxConnection(crypto.generate_private_key(), capabilities=CAPS).receive_message(
            bytes((1, 2, 9)) + bytes(32) + eph, 0
        )
    assert e.value.wire_code is ErrorCode.malformed
    with pytest.raises(SessionError):  # pairing HELLO without secret id
        BoxConnection(crypto.generate_private_key(), capabilities=CAPS).receive_message(
            bytes((1, 2, 2)) + bytes(32) + eph, 0
        )


def test_sessions_have_distinct_ids_and_keys() -> None:
    p = Pair()
    a_phone, a_box = p.session()
    b_phone, b_box = p.session()
    establish(a_phone, a_box)
    establish(b_phone, b_box)
    assert a_box.session_id != b_box.session_id
    a_phone.send_message(b"x", 0)
    [rec] = a_phone.data_to_send()
    with pytest.raises(SessionError):
        b_box.receive_message(rec, 0)  # cross-session replay


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=400), prefix=st.sampled_from([b"", b"\x01", b"\x02", b"\x03", b"\x7f", b"\x10"])
)
def test_fuzz_handshake_parsers_only_raise_session_error(data: bytes, prefix: bytes) -> None:
    p = Pair()
    phone, box = p.session()
    phone.start()
    for target in (box, phone, BoxConnection(p.box_key, capabilities=CAPS)):
        try:
            target.receive_message(prefix + data, 0)
        except SessionError:
            assert target.state is State.failed


def test_injected_plaintext_error_cannot_end_or_mislabel_a_live_session() -> None:
    """v1 honoured plaintext ERROR in every state: `7f0009` made a live phone report "revoked".
    Once a side holds traffic keys an unauthenticated ERROR is dropped unread (Rule 2)."""
    p = Pair()
    phone, box = p.session()
    establish(phone, box)
    forged = handshake.encode_error(ErrorCode.phone_revoked)
    assert phone.receive_message(forged, 0) == [] and phone.established
    assert box.receive_message(forged, 0) == [] and box.established
    assert phone.ignored_plaintext_errors == box.ignored_plaintext_errors == 1
    box.send_message(b"still talking", 0)
    assert deliver(box, phone) == [MessageReceived(b"still talking")]
    # ...also while the phone waits for the verdict (it already holds keys).
    phone2, box2 = p.session()
    phone2.start()
    deliver(phone2, box2)
    deliver(box2, phone2)
    deliver(phone2, box2)
    assert phone2.receive_message(forged, 0) == [] and phone2.state is State.auth_sent
    # A genuine refusal is an encrypted record the phone reports with its code.
    box2.refuse(ErrorCode.phone_revoked, 0)
    assert deliver(box2, phone2) == [PeerError(ErrorCode.phone_revoked)]


def test_errors_say_whose_fault_they_are() -> None:
    p = Pair()
    with pytest.raises(LocalProtocolError):  # our own misuse: sending before the handshake
        PhoneConnection(p.phone_key, p.box_hash, capabilities=CAPS).send_message(b"x", 0)
    box = BoxConnection(p.box_key, capabilities=CAPS)
    with pytest.raises(RemoteProtocolError):  # the peer's fault: a malformed HELLO
        box.receive_message(b"\x01\x02", 0)
    assert box.state is State.failed


def test_transition_table_drives_both_ends() -> None:
    """Every step the connections take is in states.TRANSITIONS (and the spec prints that table)."""
    from edgebox.session import states

    p = Pair()
    phone, box = p.pairing()
    walked: list[tuple[str, str]] = []
    for conn in (phone, box):
        original = conn._step

        def spy(step: states.Event, conn: PhoneConnection | BoxConnection = conn, original=original) -> None:  # type: ignore[no-untyped-def]
            before = conn.state
            original(step)
            walked.append((before.value, conn.state.value))
            assert states.next_state(conn.role, before, step) is conn.state

        conn._step = spy  # type: ignore[method-assign]
    establish(phone, box, psk=p.invite.psk())
    assert ("HELLO_SENT", "AUTH_SENT") in walked and ("AUTH_SENT", "ESTABLISHED") in walked
