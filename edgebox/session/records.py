"""Record layer: AES-256-GCM with per-direction keys, 64-bit counter nonces, strict order, rekeying.

Theory of operation (spec: docs/protocol.md, "Records"). After the handshake each direction has its
own traffic secret. A record on the wire is

    type (u8) || AES-256-GCM(key, nonce, aad, plaintext)            (ciphertext || 16-byte tag)
    nonce = 0x00000000 || counter (u64, big-endian)
    aad   = "EBR1" || session_id (8) || type (u8) || nonce

The counter is implicit, as in TLS 1.3 over TCP: the framing below delivers records reliably and in
order, so both ends know the next counter and it is not sent (8 bytes saved per BLE record). It is
still strictly checked: a record sealed under any other counter (replayed, reordered, dropped,
from another session) fails authentication, because the nonce and the AAD both carry it. The AAD
binds protocol version, session id, record type and counter. Any failure is fatal (fail closed);
only on that path does the layer spend extra work to name the cause (replay vs reorder vs tamper).
Nonces are never random and never reused: keys are fresh per session and never persisted.

Rekeying: the sender rotates its key before REKEY_AFTER_RECORDS records or REKEY_AFTER_SECONDS
seconds under one key by sealing a REKEY record under the old key and switching to
secret' = HKDF-Expand(secret, "traffic next"). The receiver switches after opening that record and
fails closed if the peer overstays a key (HARD_RECORDS / HARD_SECONDS). Counters continue across
rekeys. Old secrets are dropped, so a later key compromise does not expose earlier epochs. Time is
passed in (`now`, monotonic seconds); the layer does no I/O.

The hot path (seal/open of DATA) is kept to a handful of bytes operations: it is measured against
raw AES-GCM by `edgebox bench session`.
"""

from __future__ import annotations

from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edgebox.session import crypto
from edgebox.session.errors import ErrorCode, SessionError

HEADER_LEN = 1
TAG_LEN = 16
OVERHEAD = HEADER_LEN + TAG_LEN
AAD_PREFIX = b"EBR1"
MAX_COUNTER = 1 << 48  # hard stop for a session, far below 2^64
REKEY_AFTER_RECORDS = 1 << 20
REKEY_AFTER_SECONDS = 600.0
HARD_RECORDS = REKEY_AFTER_RECORDS + (1 << 10)
HARD_SECONDS = 900.0
DIAGNOSE_WINDOW = 32  # on failure, how far back/ahead to look to name replay or reorder


class RecordType(IntEnum):
    data = 0x10  # one application message (JSON)
    rekey = 0x11  # empty; the sender switches keys after this record
    close = 0x12  # empty; orderly end of the session (anything after it is an error)
    accept = 0x13  # box -> phone, first record: the box accepted the phone (empty)


def traffic_key(secret: bytes) -> AESGCM:
    return AESGCM(crypto.hkdf_expand(secret, b"traffic key"))


def next_secret(secret: bytes) -> bytes:
    return crypto.hkdf_expand(secret, b"traffic next")


def nonce(counter: int) -> bytes:
    return counter.to_bytes(12, "big")


class RecordLayer:
    """Seals outgoing and opens incoming records for one established session.

    Per-direction state is kept flat on the instance (`_s_*` send, `_r_*` receive) so the hot path
    is a few slot loads; `limit` and `deadline` fold every per-record check into two compares, and
    setting a limit to -1 routes all later calls to the slow path that raises.
    """

    __slots__ = (
        "_aad",
        "_hdr",
        "_r_counter",
        "_r_deadline",
        "_r_decrypt",
        "_r_epoch_first",
        "_r_limit",
        "_r_secret",
        "_s_counter",
        "_s_deadline",
        "_s_encrypt",
        "_s_epoch_first",
        "_s_limit",
        "_s_secret",
        "closed_by_peer",
        "failed",
        "rekeys_received",
        "rekeys_sent",
    )

    def __init__(self, session_id: bytes, send_secret: bytes, recv_secret: bytes, now: float) -> None:
        if len(session_id) != 8:
            raise ValueError("session id must be 8 bytes")
        prefix = AAD_PREFIX + session_id
        # AAD prefix and header byte per record type (index = type byte); None marks an unknown type.
        self._aad: list[bytes | None] = [None] * 256
        self._hdr: list[bytes] = [b""] * 256
        for t in RecordType:
            self._aad[t] = prefix + bytes((t,))
            self._hdr[t] = bytes((t,))
        self._s_counter = 0
        self._r_counter = 0
        self._set_send(send_secret, now)
        self._set_recv(recv_secret, now)
        self.failed = False
        self.closed_by_peer = False
        self.rekeys_sent = 0
        self.rekeys_received = 0

    def _set_send(self, secret: bytes, now: float) -> None:
        self._s_secret = secret
        self._s_encrypt = traffic_key(secret).encrypt
        self._s_epoch_first = self._s_counter
        self._s_limit = min(MAX_COUNTER, self._s_counter + HARD_RECORDS)
        self._s_deadline = now + HARD_SECONDS

    def _set_recv(self, secret: bytes, now: float) -> None:
        self._r_secret = secret
        self._r_decrypt = traffic_key(secret).decrypt
        self._r_epoch_first = self._r_counter
        self._r_limit = min(MAX_COUNTER, self._r_counter + HARD_RECORDS)
        self._r_deadline = now + HARD_SECONDS

    @property
    def send_secret(self) -> bytes:
        return self._s_secret

    def _fail(self, code: ErrorCode, message: str) -> SessionError:
        self.failed = True
        self._s_limit = self._r_limit = -1
        return SessionError(code, message)

    # -- sending -------------------------------------------------------------------------------

    def seal(self, rtype: int, plaintext: bytes, now: float) -> bytes:
        """Return the wire form of one record under the current key (no automatic rekey: see
        `seal_all`). Refuses to overstay the key's hard limits."""
        c = self._s_counter
        if c >= self._s_limit or now > self._s_deadline:
            self._send_refusal(c)
        n = c.to_bytes(12, "big")
        self._s_counter = c + 1
        return self._hdr[rtype] + self._s_encrypt(n, plaintext, self._aad[rtype] + n)  # type: ignore[operator]

    def _send_refusal(self, c: int) -> None:
        if self.failed:
            raise SessionError(ErrorCode.closed, "record layer has failed")
        if c >= MAX_COUNTER:
            raise self._fail(ErrorCode.counter_exhausted, "session record counter exhausted")
        raise self._fail(ErrorCode.rekey_overdue, "refusing to overstay the key's limits")

    def needs_rekey(self, now: float) -> bool:
        records = self._s_counter - self._s_epoch_first
        age = now - (self._s_deadline - HARD_SECONDS)
        return records >= REKEY_AFTER_RECORDS or age >= REKEY_AFTER_SECONDS

    def seal_all(self, rtype: int, plaintext: bytes, now: float) -> list[bytes]:
        """Seal one record, preceded by a REKEY record (and a key switch) when one is due."""
        if self.needs_rekey(now):
            rekey = self.seal(REKEY, b"", now)
            self._set_send(next_secret(self._s_secret), now)
            self.rekeys_sent += 1
            return [rekey, self.seal(rtype, plaintext, now)]
        return [self.seal(rtype, plaintext, now)]

    # -- receiving -----------------------------------------------------------------------------

    def open(self, record: bytes, now: float) -> tuple[RecordType, bytes]:
        """Authenticate and decrypt the next record; enforce order, limits and the record grammar."""
        c = self._r_counter
        if c >= self._r_limit or now > self._r_deadline:
            self._recv_refusal(c)
        n = c.to_bytes(12, "big")
        try:
            plaintext = self._r_decrypt(n, record[1:], self._aad[record[0]] + n)  # type: ignore[operator]
        except InvalidTag:
            raise self._diagnose(record) from None
        except (TypeError, IndexError):  # unknown type (no AAD for it) or empty record
            raise self._fail(ErrorCode.malformed, "unknown record type or empty record") from None
        self._r_counter = c + 1
        if record[0] == 0x10:
            return _DATA, plaintext
        return self._control(RecordType(record[0]), plaintext, now), plaintext

    def _recv_refusal(self, c: int) -> None:
        if self.failed:
            raise SessionError(ErrorCode.closed, "record layer has failed")
        if self.closed_by_peer:
            raise self._fail(ErrorCode.unexpected_message, "record after the peer closed the session")
        if c >= MAX_COUNTER:
            raise self._fail(ErrorCode.counter_exhausted, "session record counter exhausted")
        raise self._fail(ErrorCode.rekey_overdue, "peer overstayed its key limits")

    def _control(self, kind: RecordType, plaintext: bytes, now: float) -> RecordType:
        if plaintext:
            raise self._fail(ErrorCode.malformed, "control record with a payload")
        if kind is RecordType.rekey:
            self._set_recv(next_secret(self._r_secret), now)
            self.rekeys_received += 1
        elif kind is RecordType.close:
            self.closed_by_peer = True
            self._r_limit = -1  # anything after CLOSE takes the slow path
        return kind

    def _diagnose(self, record: bytes) -> SessionError:
        """Slow path, only after a tag failure: was it an old or a future counter, or tampering?"""
        if len(record) < OVERHEAD:
            return self._fail(ErrorCode.malformed, "record shorter than header and tag")
        aad = self._aad[record[0]]
        assert aad is not None
        body = record[1:]
        for delta, code, what in ((-1, ErrorCode.replay, "replayed"), (1, ErrorCode.reorder, "reordered")):
            for k in range(1, DIAGNOSE_WINDOW + 1):
                other = self._r_counter + delta * k
                if other < self._r_epoch_first:
                    break
                n = other.to_bytes(12, "big")
                try:
                    self._r_decrypt(n, body, aad + n)
                except InvalidTag:
                    continue
                return self._fail(code, f"record counter {what} (expected the next one)")
        return self._fail(ErrorCode.auth_failed, "record failed authentication")


_DATA = RecordType.data
# Plain-int record types for the hot path (an IntEnum index costs an int copy per call).
DATA, REKEY, CLOSE, ACCEPT = 0x10, 0x11, 0x12, 0x13
