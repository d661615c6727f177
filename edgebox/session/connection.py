"""Phone and box session state machines (sans-I/O), combining the handshake and the record layer.

Theory of operation: each connection takes whole protocol messages (what the framer delivers) with
`receive_message(data, now)` and returns a list of events; whatever it wants to send is queued and
taken with `data_to_send()` (messages for the framer). Like aioquic's QuicConnection it has a clock
but never reads one: `next_deadline()` says when it next needs to act on its own and the driver
calls `handle_timer(now)` then (the handshake deadline; rekeys and keep-alives once established).
Randomness and ephemeral keys can be injected for test vectors; limits come from one
`SessionConfig`.

Every step is looked up in `states.TRANSITIONS` (printed in docs/protocol.md, section 4.3). Errors
say whose fault they are: `RemoteProtocolError` (the peer or the link) moves the machine to FAILED
and queues an ERROR for the peer; `LocalProtocolError` (the caller misused the machine) changes
nothing. Once a side holds traffic keys everything it sends is a record (refusals and errors are
encrypted ERROR records, as TLS 1.3 encrypts post-handshake alerts) and a plaintext ERROR it
receives is dropped unread (Rule 2 in `states`).

The handshake transcript starts with the framing capabilities exchange (`capabilities`: request |
response, 15 bytes), so a downgrade of the framing negotiation breaks the signatures.

The box learns who the phone is only after PHONE_AUTH verifies; it then emits `PhoneAuthenticated`
and waits for the application (which owns the phone registry) to call `accept()` or `refuse(code)`.
In pairing mode it first emits `PairingSecretRequested` and waits for `provide_secret(psk)`; an
unknown, expired, used or locked secret id gets a random psk instead, so the box answers exactly as
for a known id with a wrong secret (no oracle). `failed_proof` tells the application that a
PHONE_AUTH arrived and did not verify: the only event that may count against a pairing secret.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass

from edgebox.session import crypto, handshake, records
from edgebox.session.config import DEFAULT_CONFIG, SessionConfig
from edgebox.session.errors import ErrorCode, LocalProtocolError, RemoteProtocolError, SessionError
from edgebox.session.handshake import CAPS_LEN, BoxAuth, Hello, Mode, MsgType
from edgebox.session.records import RecordLayer, RecordType
from edgebox.session.states import KEYED, Role, State, next_state
from edgebox.session.states import Event as Step


# -- events ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PairingSecretRequested:
    secret_id: bytes


@dataclass(frozen=True, slots=True)
class PhoneAuthenticated:
    phone_key: bytes  # 65-byte uncompressed point, verified
    pairing: bool


@dataclass(frozen=True, slots=True)
class SessionEstablished:
    session_id: bytes
    peer_key: bytes


@dataclass(frozen=True, slots=True)
class MessageReceived:
    payload: bytes


@dataclass(frozen=True, slots=True)
class PeerClosed:
    pass


@dataclass(frozen=True, slots=True)
class PeerError:
    code: ErrorCode


Event = (
    PairingSecretRequested
    | PhoneAuthenticated
    | SessionEstablished
    | MessageReceived
    | PeerClosed
    | PeerError
)

_RECORD_STEP = {
    RecordType.accept: Step.accept_record,
    RecordType.data: Step.traffic_record,
    RecordType.rekey: Step.traffic_record,
    RecordType.keepalive: Step.traffic_record,
    RecordType.close: Step.close_record,
    RecordType.error: Step.error_record,
}
_TERMINAL = (State.failed, State.closed)


def phone_id(phone_key: bytes) -> str:
    """Public label of a phone: first 8 bytes of SHA-256(public key), hex. A label for people and
    logs only: every decision compares the full public key."""
    return crypto.key_hash(phone_key)[:8].hex()


class _Connection:
    role: Role

    def __init__(self, capabilities: bytes, config: SessionConfig, now: float) -> None:
        if len(capabilities) != CAPS_LEN:
            raise LocalProtocolError(ErrorCode.internal, f"capabilities must be the {CAPS_LEN}-byte exchange")
        self.state = State.start
        self.config = config
        self._caps = bytes(capabilities)
        self._out: list[bytes] = []
        self._records: RecordLayer | None = None
        self._deadline = now + config.handshake_timeout_s
        self.session_id = b""
        self.peer_key = b""
        self.ignored_plaintext_errors = 0

    def data_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    @property
    def queued(self) -> int:
        """Messages queued and not yet taken by `data_to_send`."""
        return len(self._out)

    @property
    def established(self) -> bool:
        return self.state is State.established

    @property
    def keyed(self) -> bool:
        return self.state in KEYED[self.role]

    # -- transitions ---------------------------------------------------------------------------

    def _step(self, step: Step) -> None:
        after = next_state(self.role, self.state, step)
        if after is None:
            raise RemoteProtocolError(
                ErrorCode.unexpected_message, f"{step.value} in state {self.state.value}"
            )
        self.state = after

    def _local_step(self, step: Step) -> None:
        after = next_state(self.role, self.state, step)
        if after is None:
            code = ErrorCode.closed if self.state in _TERMINAL else ErrorCode.unexpected_message
            raise LocalProtocolError(code, f"{step.value} is not allowed in state {self.state.value}")
        self.state = after

    def _fail(self, exc: SessionError, now: float, *, tell_peer: bool = True) -> SessionError:
        """Rule 1: move to FAILED and tell the peer why, encrypted once we hold keys."""
        if self.state is State.failed:
            return exc
        self.state = State.failed
        if tell_peer:
            sealed = self._records.seal_error(exc.wire_code, now) if self._records is not None else None
            if sealed is not None:
                self._out.append(sealed)
            elif self._records is None:
                self._out.append(handshake.encode_error(exc.wire_code))
        return exc

    # -- application calls ---------------------------------------------------------------------

    def send_message(self, payload: bytes, now: float) -> None:
        """Queue one application message (a DATA record)."""
        if self.state is not State.established or self._records is None:
            raise LocalProtocolError(
                ErrorCode.closed if self.state in _TERMINAL else ErrorCode.unexpected_message,
                "session is not established",
            )
        try:
            self._out.extend(self._records.seal_all(records.DATA, payload, now))
        except LocalProtocolError as exc:
            if exc.wire_code is ErrorCode.oversize:
                raise  # the caller's mistake: nothing was sealed, the session goes on
            self.state = State.failed  # a key past its limits (no timer was driven): fail closed
            raise

    def abort(self, code: ErrorCode, now: float) -> None:
        """End the session on our own decision (e.g. the phone was revoked): FAILED, and the peer
        gets an ERROR with `code` (an encrypted record once we hold keys). Rule 1."""
        if self.state not in _TERMINAL:
            self._fail(RemoteProtocolError(code, "ended by this side"), now)

    def close(self, now: float) -> None:
        """Queue an authenticated CLOSE record (orderly end) and stop."""
        if self.state in _TERMINAL:
            return
        if self.state is State.established and self._records is not None and self._records.can_send:
            self._out.append(self._records.seal(records.CLOSE, b"", now))
        self._local_step(Step.close)

    # -- clock ---------------------------------------------------------------------------------

    def next_deadline(self) -> float:
        """When `handle_timer` must next be called (same clock as `now`); inf if never."""
        if self.state in _TERMINAL:
            return float("inf")
        if self.state is State.established and self._records is not None:
            return self._records.next_deadline()
        return self._deadline

    def handle_timer(self, now: float) -> None:
        """Act on the clock: fail an overdue handshake (Rule 3); rekey / keep alive when established."""
        if self.state in _TERMINAL:
            return
        if self.state is State.established and self._records is not None:
            try:
                self._out.extend(self._records.handle_timer(now))
            except SessionError as exc:
                raise self._fail(exc, now, tell_peer=False) from None
            return
        if now >= self._deadline:
            raise self._fail(RemoteProtocolError(ErrorCode.timeout, "handshake timed out"), now)

    # -- input ---------------------------------------------------------------------------------

    def receive_message(self, data: bytes, now: float) -> list[Event]:
        if self.state in _TERMINAL:
            raise LocalProtocolError(ErrorCode.closed, "connection is closed")
        try:
            if not data:
                raise RemoteProtocolError(ErrorCode.malformed, "empty message")
            if data[0] == MsgType.error:
                return self._plaintext_error(data)
            if self.state in KEYED[self.role]:
                return self._on_record(data, now)
            return self._receive_handshake(data, now)
        except LocalProtocolError:
            raise
        except SessionError as exc:
            raise self._fail(exc, now) from None

    def _plaintext_error(self, data: bytes) -> list[Event]:
        if next_state(self.role, self.state, Step.plaintext_error) is None:
            self.ignored_plaintext_errors += 1  # Rule 2: unauthenticated, and we hold keys
            return []
        code = handshake.decode_error(data)
        self._step(Step.plaintext_error)
        return [PeerError(code)]

    def _on_record(self, data: bytes, now: float) -> list[Event]:
        assert self._records is not None
        kind, content = self._records.open(data, now)
        self._step(_RECORD_STEP[kind])
        if kind is RecordType.data:
            return [MessageReceived(content)]
        if kind is RecordType.error:
            return [PeerError(records.decode_error_code(content))]
        if kind is RecordType.close:
            return [PeerClosed()]
        if kind is RecordType.accept:
            return [SessionEstablished(self.session_id, self.peer_key)]
        return []

    def _receive_handshake(self, data: bytes, now: float) -> list[Event]:
        raise NotImplementedError

    def _transcript(self, *parts: bytes) -> bytes:
        return crypto.sha256(self._caps, *parts)


class PhoneConnection(_Connection):
    """The phone (initiator). `box_key_hash` is the pin: from the QR code, or stored at pairing."""

    role = Role.phone

    def __init__(
        self,
        identity: crypto.PrivateKey,
        box_key_hash: bytes,
        *,
        capabilities: bytes,
        config: SessionConfig = DEFAULT_CONFIG,
        pairing_secret: tuple[bytes, bytes] | None = None,
        ephemeral: crypto.PrivateKey | None = None,
        random: bytes | None = None,
    ) -> None:
        super().__init__(capabilities, config, 0.0)
        if len(box_key_hash) != crypto.HASH_LEN:
            raise LocalProtocolError(ErrorCode.internal, "box key hash must be 32 bytes")
        self._identity = identity
        self._identity_point = crypto.encode_public(identity)
        self._pin = box_key_hash
        self._pairing = pairing_secret
        self._eph = ephemeral or crypto.generate_private_key()
        self._random = random or os.urandom(handshake.RANDOM_LEN)
        self._hello = b""

    @property
    def mode(self) -> Mode:
        return Mode.pairing if self._pairing else Mode.session

    def start(self, now: float = 0.0) -> None:
        self._local_step(Step.start)
        self._deadline = now + self.config.handshake_timeout_s
        secret_id = self._pairing[0] if self._pairing else None
        self._hello = Hello(self.mode, self._random, crypto.encode_public(self._eph), secret_id).encode()
        self._out.append(self._hello)

    def _receive_handshake(self, data: bytes, now: float) -> list[Event]:
        if self.state is not State.hello_sent or data[0] != MsgType.box_auth:
            raise RemoteProtocolError(ErrorCode.unexpected_message, f"message in state {self.state.value}")
        msg = BoxAuth.decode(data)
        shared = crypto.ecdh(self._eph, crypto.decode_public(msg.ephemeral))
        psk = handshake.pairing_psk(self._pairing[1]) if self._pairing else None
        ms = handshake.master_secret(shared, psk)
        th2 = self._transcript(self._hello, msg.clear_part())
        try:
            box_point, _ = handshake.open_identity(ms, b"box", th2, msg.sealed)
        except SessionError as exc:
            if self._pairing and exc.wire_code is ErrorCode.auth_failed:
                raise RemoteProtocolError(
                    ErrorCode.pairing_secret_invalid,
                    "the box did not accept this pairing code (expired, used, locked, or not this box)",
                ) from None
            raise
        if not hmac.compare_digest(crypto.key_hash(box_point), self._pin):
            raise RemoteProtocolError(ErrorCode.box_key_mismatch, "box key does not match the pinned key")
        th3 = self._transcript(self._hello, data)
        sealed = handshake.seal_identity(ms, b"phone", th3, self._identity, self._identity_point)
        auth = bytes((MsgType.phone_auth,)) + sealed
        th4 = self._transcript(self._hello, data, auth)
        p2b, b2p = handshake.traffic_secrets(ms, th4)
        self.session_id = bytes(msg.session_id)
        self.peer_key = bytes(box_point)
        self._records = RecordLayer(self.session_id, p2b, b2p, now, self.config)
        self._out.append(auth)
        self._step(Step.box_auth)
        return []


class BoxConnection(_Connection):
    """The box (responder). `identity` is the box's long-term key."""

    role = Role.box

    def __init__(
        self,
        identity: crypto.PrivateKey,
        *,
        capabilities: bytes,
        config: SessionConfig = DEFAULT_CONFIG,
        now: float = 0.0,
        ephemeral: crypto.PrivateKey | None = None,
        random: bytes | None = None,
        session_id: bytes | None = None,
    ) -> None:
        super().__init__(capabilities, config, now)
        self.state = State.await_hello
        self._identity = identity
        self._identity_point = crypto.encode_public(identity)
        self._eph = ephemeral or crypto.generate_private_key()
        self._random = random or os.urandom(handshake.RANDOM_LEN)
        self.session_id = session_id or os.urandom(handshake.SESSION_ID_LEN)
        self._hello: Hello | None = None
        self._hello_bytes = b""
        self._box_auth = b""
        self._ms = b""
        self.mode = Mode.session
        self.secret_id: bytes | None = None
        self.failed_proof = False  # a PHONE_AUTH arrived and did not verify

    def _receive_handshake(self, data: bytes, now: float) -> list[Event]:
        if self.state is State.await_hello:
            hello = Hello.decode(data)
            self._hello = hello
            self._hello_bytes = bytes(data)
            self.mode = hello.mode
            if hello.mode is Mode.pairing:
                assert hello.secret_id is not None
                self.secret_id = bytes(hello.secret_id)
                self._step(Step.hello_pairing)
                return [PairingSecretRequested(self.secret_id)]
            self._send_box_auth(None)
            self._step(Step.hello_session)
            return []
        if self.state is State.auth_sent and data[0] == MsgType.phone_auth:
            return self._on_phone_auth(data, now)
        raise RemoteProtocolError(ErrorCode.unexpected_message, f"message in state {self.state.value}")

    def provide_secret(self, psk: bytes | None) -> None:
        """Answer PairingSecretRequested with the stored psk of that secret id (see
        `handshake.pairing_psk`), or None if it is unknown, expired, used or locked: the box then
        goes on with a random psk nobody knows, indistinguishable on the wire from a wrong secret."""
        if psk is not None and len(psk) != crypto.HASH_LEN:
            raise LocalProtocolError(ErrorCode.internal, "psk must be 32 bytes")
        self._local_step(Step.provide_secret)
        self._send_box_auth(psk if psk is not None else os.urandom(crypto.HASH_LEN))

    def _send_box_auth(self, psk: bytes | None) -> None:
        assert self._hello is not None
        shared = crypto.ecdh(self._eph, crypto.decode_public(self._hello.ephemeral))
        self._ms = handshake.master_secret(shared, psk)
        clear = BoxAuth(self.session_id, self._random, crypto.encode_public(self._eph), b"").clear_part()
        th2 = self._transcript(self._hello_bytes, clear)
        sealed = handshake.seal_identity(self._ms, b"box", th2, self._identity, self._identity_point)
        self._box_auth = clear + sealed
        self._out.append(self._box_auth)

    def _on_phone_auth(self, data: bytes, now: float) -> list[Event]:
        sealed = handshake.decode_phone_auth(data)
        th3 = self._transcript(self._hello_bytes, self._box_auth)
        th4 = self._transcript(self._hello_bytes, self._box_auth, data)
        p2b, b2p = handshake.traffic_secrets(self._ms, th4)
        # Keys first: whatever the outcome, the answer to PHONE_AUTH is a record (ACCEPT or ERROR).
        self._records = RecordLayer(self.session_id, b2p, p2b, now, self.config)
        try:
            point, _ = handshake.open_identity(self._ms, b"phone", th3, sealed)
        except SessionError:
            self.failed_proof = True
            raise
        finally:
            self._ms = b""
        self.peer_key = bytes(point)
        self._step(Step.phone_auth)
        return [PhoneAuthenticated(self.peer_key, pairing=self.mode is Mode.pairing)]

    def accept(self, now: float) -> list[Event]:
        """The application accepts the authenticated phone: send ACCEPT, session is established."""
        if self.state is not State.await_decision or self._records is None:
            raise LocalProtocolError(ErrorCode.unexpected_message, "no phone is awaiting a decision")
        self._out.append(self._records.seal(records.ACCEPT, b"", now))
        self._local_step(Step.accept)
        return [SessionEstablished(self.session_id, self.peer_key)]

    def refuse(self, code: ErrorCode, now: float = 0.0) -> None:
        """The application refuses the phone (unknown, revoked, secret already used, busy, ...).
        After PHONE_AUTH the refusal is an encrypted ERROR record; before it, a plaintext ERROR."""
        if self.state not in (State.await_decision, State.await_hello):
            raise LocalProtocolError(ErrorCode.unexpected_message, "nothing to refuse in this state")
        self._fail(RemoteProtocolError(code, "refused"), now)
