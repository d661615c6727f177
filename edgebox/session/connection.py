"""Phone and box session state machines (sans-I/O), combining the handshake and the record layer.

Theory of operation: each connection takes whole protocol messages (what the framer delivers) with
`receive_message(data, now)` and returns a list of events; whatever it wants to send is queued and
taken with `data_to_send()` (messages for the framer). Time is passed in; randomness and ephemeral
keys can be injected for test vectors. Any error is raised as `SessionError`, moves the machine to
FAILED and queues a plaintext ERROR for the peer where that is still meaningful; a failed machine
refuses all further input.

Phone states: START -> HELLO_SENT -> AUTH_SENT -> ESTABLISHED -> CLOSED | FAILED
Box states:   AWAIT_HELLO [-> AWAIT_SECRET] -> AUTH_SENT -> AWAIT_DECISION -> ESTABLISHED -> CLOSED | FAILED

The box learns who the phone is only after PHONE_AUTH verifies; it then emits `PhoneAuthenticated`
and waits for the application (which owns the phone registry) to call `accept()` or `refuse(code)`.
In pairing mode the box first emits `PairingSecretRequested` and waits for `provide_secret()`.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from enum import Enum

from edgebox.session import crypto, handshake, records
from edgebox.session.errors import ErrorCode, SessionError
from edgebox.session.handshake import BoxAuth, Hello, Mode, MsgType
from edgebox.session.records import RecordLayer, RecordType


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


class State(Enum):
    start = "start"
    await_hello = "await_hello"
    await_secret = "await_secret"  # noqa: S105 (a state name, not a password)
    hello_sent = "hello_sent"
    auth_sent = "auth_sent"
    await_decision = "await_decision"
    established = "established"
    closed = "closed"
    failed = "failed"


def phone_id(phone_key: bytes) -> str:
    """Stable public identifier of a phone: first 8 bytes of SHA-256(public key), hex."""
    return crypto.key_hash(phone_key)[:8].hex()


class _Connection:
    def __init__(self) -> None:
        self.state = State.start
        self._out: list[bytes] = []
        self._records: RecordLayer | None = None
        self.session_id = b""
        self.peer_key = b""

    def data_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    @property
    def established(self) -> bool:
        return self.state is State.established

    def _fail(self, exc: SessionError, *, tell_peer: bool = True) -> SessionError:
        if self.state is not State.failed:
            self.state = State.failed
            if tell_peer:
                self._out.append(handshake.encode_error(exc.wire_code))
        return exc

    def _guard(self) -> None:
        if self.state in (State.failed, State.closed):
            raise SessionError(ErrorCode.closed, "connection is closed")

    def send_message(self, payload: bytes, now: float) -> None:
        """Queue one application message (a DATA record)."""
        self._guard()
        if self.state is not State.established or self._records is None:
            raise SessionError(ErrorCode.unexpected_message, "session is not established")
        self._out.extend(self._records.seal_all(records.DATA, payload, now))

    def close(self, now: float) -> None:
        """Queue an authenticated CLOSE record (orderly end) and stop."""
        if self.state is State.established and self._records is not None:
            self._out.append(self._records.seal(records.CLOSE, b"", now))
        if self.state is not State.failed:
            self.state = State.closed

    def receive_message(self, data: bytes, now: float) -> list[Event]:
        self._guard()
        if not data:
            raise self._fail(SessionError(ErrorCode.malformed, "empty message"))
        try:
            if data[0] == MsgType.error:
                code = handshake.decode_error(data)
                self.state = State.failed
                return [PeerError(code)]
            return self._receive(data, now)
        except SessionError as exc:
            raise self._fail(exc) from None

    def _receive(self, data: bytes, now: float) -> list[Event]:
        raise NotImplementedError

    def _open_record(self, data: bytes, now: float) -> list[Event]:
        assert self._records is not None
        kind, payload = self._records.open(data, now)
        if kind is RecordType.data:
            return [MessageReceived(payload)]
        if kind is RecordType.close:
            self.state = State.closed
            return [PeerClosed()]
        if kind is RecordType.rekey:
            return []
        raise SessionError(ErrorCode.unexpected_message, "unexpected ACCEPT record")


class PhoneConnection(_Connection):
    """The phone (initiator). `box_key_hash` is the pin: from the QR code, or stored at pairing."""

    def __init__(
        self,
        identity: crypto.PrivateKey,
        box_key_hash: bytes,
        *,
        pairing_secret: tuple[bytes, bytes] | None = None,
        ephemeral: crypto.PrivateKey | None = None,
        random: bytes | None = None,
    ) -> None:
        super().__init__()
        if len(box_key_hash) != crypto.HASH_LEN:
            raise ValueError("box key hash must be 32 bytes")
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

    def start(self) -> None:
        if self.state is not State.start:
            raise SessionError(ErrorCode.unexpected_message, "start() called twice")
        secret_id = self._pairing[0] if self._pairing else None
        self._hello = Hello(self.mode, self._random, crypto.encode_public(self._eph), secret_id).encode()
        self._out.append(self._hello)
        self.state = State.hello_sent

    def _receive(self, data: bytes, now: float) -> list[Event]:
        if self.state is State.hello_sent:
            return self._on_box_auth(data, now)
        if self.state is State.auth_sent:
            assert self._records is not None
            kind, _ = self._records.open(data, now)
            if kind is not RecordType.accept:
                raise SessionError(ErrorCode.unexpected_message, "first box record must be ACCEPT")
            self.state = State.established
            return [SessionEstablished(self.session_id, self.peer_key)]
        if self.state is State.established:
            return self._open_record(data, now)
        raise SessionError(ErrorCode.unexpected_message, f"message in state {self.state.value}")

    def _on_box_auth(self, data: bytes, now: float) -> list[Event]:
        msg = BoxAuth.decode(data)
        shared = crypto.ecdh(self._eph, crypto.decode_public(msg.ephemeral))
        psk = handshake.pairing_psk(self._pairing[1]) if self._pairing else None
        ms = handshake.master_secret(shared, psk)
        th2 = crypto.sha256(self._hello, msg.clear_part())
        try:
            box_point, _ = handshake.open_identity(ms, b"box", th2, msg.sealed)
        except SessionError as exc:
            if self._pairing and exc.wire_code is ErrorCode.auth_failed:
                raise SessionError(
                    ErrorCode.auth_failed, "box authentication failed (wrong pairing secret or not the box)"
                ) from None
            raise
        if not hmac.compare_digest(crypto.key_hash(box_point), self._pin):
            raise SessionError(ErrorCode.box_key_mismatch, "box key does not match the pinned key")
        th3 = crypto.sha256(self._hello, data)
        sealed = handshake.seal_identity(ms, b"phone", th3, self._identity, self._identity_point)
        auth = bytes((MsgType.phone_auth,)) + sealed
        th4 = crypto.sha256(self._hello, data, auth)
        p2b, b2p = handshake.traffic_secrets(ms, th4)
        self.session_id = bytes(msg.session_id)
        self.peer_key = bytes(box_point)
        self._records = RecordLayer(self.session_id, send_secret=p2b, recv_secret=b2p, now=now)
        self._out.append(auth)
        self.state = State.auth_sent
        return []


class BoxConnection(_Connection):
    """The box (responder). `identity` is the box's long-term key."""

    def __init__(
        self,
        identity: crypto.PrivateKey,
        *,
        ephemeral: crypto.PrivateKey | None = None,
        random: bytes | None = None,
        session_id: bytes | None = None,
    ) -> None:
        super().__init__()
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
        self._pending_secrets: tuple[bytes, bytes] | None = None
        self.mode = Mode.session

    def _receive(self, data: bytes, now: float) -> list[Event]:
        if self.state is State.await_hello:
            hello = Hello.decode(data)
            self._hello = hello
            self._hello_bytes = bytes(data)
            self.mode = hello.mode
            if hello.mode is Mode.pairing:
                assert hello.secret_id is not None
                self.state = State.await_secret
                return [PairingSecretRequested(bytes(hello.secret_id))]
            self._send_box_auth(None)
            return []
        if self.state is State.auth_sent:
            return self._on_phone_auth(data, now)
        if self.state is State.established:
            return self._open_record(data, now)
        raise SessionError(ErrorCode.unexpected_message, f"message in state {self.state.value}")

    def provide_secret(self, psk: bytes | None) -> None:
        """Answer PairingSecretRequested with the stored psk of that secret id (see
        `handshake.pairing_psk`), or None if it is unknown, expired, used or locked."""
        if self.state is not State.await_secret or self._hello is None:
            raise SessionError(ErrorCode.unexpected_message, "no pairing secret was requested")
        if psk is None or len(psk) != crypto.HASH_LEN:
            raise self._fail(SessionError(ErrorCode.pairing_secret_invalid, "pairing secret is not valid"))
        self._send_box_auth(psk)

    def _send_box_auth(self, psk: bytes | None) -> None:
        assert self._hello is not None
        shared = crypto.ecdh(self._eph, crypto.decode_public(self._hello.ephemeral))
        self._ms = handshake.master_secret(shared, psk)
        clear = BoxAuth(self.session_id, self._random, crypto.encode_public(self._eph), b"").clear_part()
        th2 = crypto.sha256(self._hello_bytes, clear)
        sealed = handshake.seal_identity(self._ms, b"box", th2, self._identity, self._identity_point)
        self._box_auth = clear + sealed
        self._out.append(self._box_auth)
        self.state = State.auth_sent

    def _on_phone_auth(self, data: bytes, now: float) -> list[Event]:
        sealed = handshake.decode_phone_auth(data)
        th3 = crypto.sha256(self._hello_bytes, self._box_auth)
        point, _ = handshake.open_identity(self._ms, b"phone", th3, sealed)
        th4 = crypto.sha256(self._hello_bytes, self._box_auth, data)
        p2b, b2p = handshake.traffic_secrets(self._ms, th4)
        self._ms = b""
        self._records = RecordLayer(self.session_id, send_secret=b2p, recv_secret=p2b, now=now)
        self.peer_key = bytes(point)
        self.state = State.await_decision
        return [PhoneAuthenticated(self.peer_key, pairing=self.mode is Mode.pairing)]

    def accept(self, now: float) -> list[Event]:
        """The application accepts the authenticated phone: send ACCEPT, session is established."""
        if self.state is not State.await_decision or self._records is None:
            raise SessionError(ErrorCode.unexpected_message, "no phone is awaiting a decision")
        self._out.append(self._records.seal(records.ACCEPT, b"", now))
        self.state = State.established
        return [SessionEstablished(self.session_id, self.peer_key)]

    def refuse(self, code: ErrorCode) -> None:
        """The application refuses the phone (unknown, revoked, pairing secret already used, ...)."""
        if self.state is not State.await_decision:
            raise SessionError(ErrorCode.unexpected_message, "no phone is awaiting a decision")
        self._fail(SessionError(code, "phone refused"))
