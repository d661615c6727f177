"""Record layer: AES-256-GCM with per-direction keys, counter nonces, strict ordering and rekeying.

Theory of operation (spec: docs/protocol.md, "Records"). After the handshake each direction has its
own traffic secret. A record is

    header (8 bytes) = type (u8) || counter (u56, big-endian)
    body             = AES-256-GCM(key, nonce = 0x00000000 || header, aad, plaintext) (ciphertext || tag)
    aad              = "EBR1" || session_id (8) || header

so the nonce is the counter (unique per key, never random, never reused: keys are fresh per session
and are never persisted), and the AAD binds protocol version, session id, counter and record type.
The receiver accepts only the exact next counter: lower is a replay, higher a reorder/drop; both,
and any tag failure (tamper, truncation), are fatal. Counters never reset within a session.

Rekeying: the sender rotates its key before REKEY_AFTER_RECORDS records or REKEY_AFTER_SECONDS
seconds under one key by sealing a REKEY record under the old key and switching to
secret' = HKDF-Expand(secret, "traffic next"). The receiver switches after opening that record and
fails closed if the peer overstays a key (HARD_RECORDS / HARD_SECONDS). Old secrets are dropped, so
a later key compromise does not expose earlier epochs. Time is passed in (`now`, monotonic seconds);
the layer does no I/O.
"""

from __future__ import annotations

from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edgebox.session import crypto
from edgebox.session.errors import ErrorCode, SessionError

HEADER_LEN = 8
TAG_LEN = 16
OVERHEAD = HEADER_LEN + TAG_LEN
AAD_PREFIX = b"EBR1"
COUNTER_BITS = 56
COUNTER_MASK = (1 << COUNTER_BITS) - 1
MAX_COUNTER = 1 << 48  # hard stop for a session, far below the 56-bit field
REKEY_AFTER_RECORDS = 1 << 20
REKEY_AFTER_SECONDS = 600.0
HARD_RECORDS = REKEY_AFTER_RECORDS + (1 << 10)
HARD_SECONDS = 900.0
_NONCE_PREFIX = b"\x00\x00\x00\x00"


class RecordType(IntEnum):
    data = 0x10  # one application message (JSON)
    rekey = 0x11  # empty; the sender switches keys after this record
    close = 0x12  # empty; orderly end of the session (anything after it is an error)
    accept = 0x13  # box -> phone, first record: the box accepted the phone (empty)


_TYPES = frozenset(int(t) for t in RecordType)


def traffic_key(secret: bytes) -> AESGCM:
    return AESGCM(crypto.hkdf_expand(secret, b"traffic key"))


def next_secret(secret: bytes) -> bytes:
    return crypto.hkdf_expand(secret, b"traffic next")


class _Direction:
    __slots__ = ("aead", "counter", "epoch_records", "epoch_started", "secret")

    def __init__(self, secret: bytes, now: float) -> None:
        self.secret = secret
        self.aead = traffic_key(secret)
        self.counter = 0
        self.epoch_records = 0
        self.epoch_started = now

    def rotate(self, now: float) -> None:
        self.secret = next_secret(self.secret)
        self.aead = traffic_key(self.secret)
        self.epoch_records = 0
        self.epoch_started = now


class RecordLayer:
    """Seals outgoing and opens incoming records for one established session."""

    def __init__(self, session_id: bytes, send_secret: bytes, recv_secret: bytes, now: float) -> None:
        if len(session_id) != 8:
            raise ValueError("session id must be 8 bytes")
        self._aad_prefix = AAD_PREFIX + session_id
        self._send = _Direction(send_secret, now)
        self._recv = _Direction(recv_secret, now)
        self.failed = False
        self.closed_by_peer = False
        self.rekeys_sent = 0
        self.rekeys_received = 0

    def _fail(self, code: ErrorCode, message: str) -> SessionError:
        self.failed = True
        return SessionError(code, message)

    # -- sending -------------------------------------------------------------------------------

    def seal(self, rtype: RecordType, plaintext: bytes, now: float) -> bytes:
        """Return the wire form of one record under the current key (no automatic rekey: see
        `seal_all`). Refuses to overstay a key's hard limits."""
        if self.failed:
            raise SessionError(ErrorCode.closed, "record layer has failed")
        d = self._send
        c = d.counter
        if c >= MAX_COUNTER:
            raise self._fail(ErrorCode.counter_exhausted, "session record counter exhausted")
        if d.epoch_records >= HARD_RECORDS or now - d.epoch_started > HARD_SECONDS:
            raise self._fail(ErrorCode.rekey_overdue, "refusing to overstay the key's limits")
        header = ((rtype << COUNTER_BITS) | c).to_bytes(HEADER_LEN, "big")
        body = d.aead.encrypt(_NONCE_PREFIX + header, plaintext, self._aad_prefix + header)
        d.counter = c + 1
        d.epoch_records += 1
        return header + body

    def needs_rekey(self, now: float) -> bool:
        d = self._send
        return d.epoch_records >= REKEY_AFTER_RECORDS or now - d.epoch_started >= REKEY_AFTER_SECONDS

    def seal_all(self, rtype: RecordType, plaintext: bytes, now: float) -> list[bytes]:
        """Seal one record, preceded by a REKEY record (and a key switch) when one is due."""
        if self.needs_rekey(now):
            rekey = self.seal(RecordType.rekey, b"", now)
            self._send.rotate(now)
            self.rekeys_sent += 1
            return [rekey, self.seal(rtype, plaintext, now)]
        return [self.seal(rtype, plaintext, now)]

    # -- receiving -----------------------------------------------------------------------------

    def open(self, record: bytes, now: float) -> tuple[RecordType, bytes]:
        """Authenticate and decrypt one record; enforce order, limits and the record grammar."""
        if self.failed:
            raise SessionError(ErrorCode.closed, "record layer has failed")
        if self.closed_by_peer:
            raise self._fail(ErrorCode.unexpected_message, "record after the peer closed the session")
        if len(record) < OVERHEAD:
            raise self._fail(ErrorCode.malformed, "record shorter than header and tag")
        view = memoryview(record)
        header = bytes(view[:HEADER_LEN])
        value = int.from_bytes(header, "big")
        rtype = value >> COUNTER_BITS
        counter = value & COUNTER_MASK
        d = self._recv
        if counter != d.counter:
            if counter < d.counter:
                raise self._fail(ErrorCode.replay, "record counter already seen (replay)")
            raise self._fail(ErrorCode.reorder, "record counter skipped ahead (reorder or drop)")
        if rtype not in _TYPES:
            raise self._fail(ErrorCode.malformed, "unknown record type")
        if d.epoch_records >= HARD_RECORDS or now - d.epoch_started > HARD_SECONDS:
            raise self._fail(ErrorCode.rekey_overdue, "peer overstayed its key limits")
        try:
            plaintext = d.aead.decrypt(_NONCE_PREFIX + header, view[HEADER_LEN:], self._aad_prefix + header)
        except InvalidTag:
            raise self._fail(ErrorCode.auth_failed, "record failed authentication") from None
        d.counter = counter + 1
        d.epoch_records += 1
        kind = RecordType(rtype)
        if kind is not RecordType.data and plaintext:
            raise self._fail(ErrorCode.malformed, "control record with a payload")
        if kind is RecordType.rekey:
            d.rotate(now)
            self.rekeys_received += 1
        elif kind is RecordType.close:
            self.closed_by_peer = True
        return kind, plaintext
