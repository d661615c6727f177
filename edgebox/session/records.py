"""Record layer: AES-256-GCM with per-direction keys, 64-bit counter nonces, padding, rekeying, a clock.

Theory of operation (spec: docs/protocol.md, section 5). After the handshake each direction has its
own traffic secret. A record on the wire is

    0x17 || AES-256-GCM(key, nonce, aad, inner)                      (ciphertext || 16-byte tag)
    inner = content || type (u8, non-zero) || 0x00 * padding        (TLS 1.3's TLSInnerPlaintext)
    nonce = 0x00000000 || counter (u64, big-endian)
    aad   = "EBR2" || session_id (8)

The real record type travels inside the AEAD, so DATA, REKEY, KEEPALIVE, ACCEPT and the encrypted
ERROR all look alike on the air; the sender pads `inner` to a multiple of `pad_block` bytes so a
record's length reveals only which bucket its content fell in, never the length of one streamed
token (cf. the token-length side channel, Weiss et al., USENIX Security 2024). The receiver strips
trailing zeros; the last byte left is the type.

The counter is implicit, as in TLS 1.3 over TCP: the framing below delivers records reliably and in
order, so both ends know the next counter and it is not sent. It is still strictly checked: a record
sealed under any other counter (replayed, reordered, dropped, from another session) fails
authentication, because the nonce carries it and the AAD carries the session. Any failure is fatal
(fail closed); only on that path does the layer spend extra work to name the cause.

Clock (the aioquic way): `next_deadline()` says when the layer next needs to act without being
asked, and `handle_timer(now)` returns the records it wants to send then: a REKEY when the send key
reaches `rekey_after_s`, else a KEEPALIVE after `keepalive_s` without sending. The driver (a
transport task) calls them, so an idle session rekeys on time and never hits the hard limits.
Sealing also rekeys by record count (`seal_all`). The receiver fails closed if the peer overstays a
key (`hard_records` / `hard_s`). Counters continue across rekeys; old secrets are dropped.

The hot path (seal/open of DATA) is a handful of bytes operations: it is measured against raw
AES-GCM by `edgebox bench session`.
"""

from __future__ import annotations

import struct
from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edgebox.session import crypto
from edgebox.session.config import DEFAULT_CONFIG, SessionConfig
from edgebox.session.errors import ErrorCode, LocalProtocolError, RemoteProtocolError, SessionError

HEADER = 0x17
_HEADER = bytes((HEADER,))
HEADER_LEN = 1
TAG_LEN = 16
OVERHEAD = HEADER_LEN + TAG_LEN + 1  # header, tag and the inner type byte
MAX_RECORD = 65_535  # one framing message
MAX_INNER = MAX_RECORD - HEADER_LEN - TAG_LEN
MAX_CONTENT = MAX_INNER - 1
AAD_PREFIX = b"EBR2"
DIAGNOSE_WINDOW = 32  # on failure, how far back/ahead to look to name replay or reorder
_U16 = struct.Struct(">H")


class RecordType(IntEnum):
    data = 0x10  # one application message (JSON)
    rekey = 0x11  # empty; the sender switches keys after this record
    close = 0x12  # empty; orderly end of the session (anything after it is an error)
    accept = 0x13  # box -> phone, first record: the box accepted the phone (empty)
    error = 0x14  # code (u16): the encrypted refusal / fatal error; the sender stops after it
    keepalive = 0x15  # empty; ignored by the receiver


_TYPES = {int(t): t for t in RecordType}


def traffic_key(secret: bytes) -> AESGCM:
    return AESGCM(crypto.hkdf_expand(secret, b"traffic key"))


def next_secret(secret: bytes) -> bytes:
    return crypto.hkdf_expand(secret, b"traffic next")


def nonce(counter: int) -> bytes:
    return counter.to_bytes(12, "big")


def padded_length(content_len: int, pad_block: int) -> int:
    """Length of `inner` for `content_len` bytes of content under the padding policy."""
    inner = content_len + 1
    return min(inner + (-inner % pad_block), MAX_INNER) if inner <= MAX_INNER else inner


def wire_length(content_len: int, pad_block: int) -> int:
    return HEADER_LEN + padded_length(content_len, pad_block) + TAG_LEN


class RecordLayer:
    """Seals outgoing and opens incoming records for one established session.

    Per-direction state is kept flat on the instance (`_s_*` send, `_r_*` receive) so the hot path
    is a few slot loads; `limit` and `deadline` fold every per-record check into two compares, and
    setting a limit to -1 routes all later calls to the slow path that raises.
    """

    __slots__ = (
        "_aad",
        "_block",
        "_cfg",
        "_fast_max",
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
        "_s_epoch_start",
        "_s_idle_count",
        "_s_idle_since",
        "_s_limit",
        "_s_secret",
        "_tails",
        "closed_by_peer",
        "failed",
        "rekeys_received",
        "rekeys_sent",
    )

    def __init__(
        self,
        session_id: bytes,
        send_secret: bytes,
        recv_secret: bytes,
        now: float,
        config: SessionConfig = DEFAULT_CONFIG,
    ) -> None:
        if len(session_id) != 8:
            raise LocalProtocolError(ErrorCode.internal, "session id must be 8 bytes")
        self._cfg = config
        self._aad = AAD_PREFIX + session_id
        self._block = config.pad_block
        # Type byte + padding for every type, indexed by content length mod block (the hot path is
        # one list lookup); content within one block of the record limit takes `_big_tail`.
        block = self._block
        self._tails: list[list[bytes]] = [[] for _ in range(256)]
        for t in RecordType:
            self._tails[t] = [bytes((t,)) + bytes(-(r + 1) % block) for r in range(block)]
        self._fast_max = MAX_INNER - block
        self._s_counter = 0
        self._r_counter = 0
        self._set_send(send_secret, now)
        self._set_recv(recv_secret, now)
        self.failed = False
        self.closed_by_peer = False
        self.rekeys_sent = 0
        self.rekeys_received = 0

    def _set_send(self, secret: bytes, now: float) -> None:
        cfg = self._cfg
        self._s_secret = secret
        self._s_encrypt = traffic_key(secret).encrypt
        self._s_epoch_first = self._s_counter
        self._s_epoch_start = now
        self._s_idle_since = now  # keep-alive clock: restarted whenever the counter moved
        self._s_idle_count = self._s_counter
        self._s_limit = min(cfg.max_records, self._s_counter + cfg.hard_records)
        self._s_deadline = now + cfg.hard_s

    def _set_recv(self, secret: bytes, now: float) -> None:
        cfg = self._cfg
        self._r_secret = secret
        self._r_decrypt = traffic_key(secret).decrypt
        self._r_epoch_first = self._r_counter
        self._r_limit = min(cfg.max_records, self._r_counter + cfg.hard_records)
        self._r_deadline = now + cfg.hard_s

    @property
    def send_secret(self) -> bytes:
        return self._s_secret

    @property
    def can_send(self) -> bool:
        """The send side can still seal (it stays usable after a receive failure, to say why)."""
        return self._s_counter < self._s_limit

    def _fail_remote(self, code: ErrorCode, message: str) -> SessionError:
        self.failed = True
        self._r_limit = -1
        return RemoteProtocolError(code, message)

    # -- sending -------------------------------------------------------------------------------

    def seal(self, rtype: int, content: bytes, now: float) -> bytes:
        """Return the wire form of one record under the current key (no automatic rekey: see
        `seal_all`). Refuses to overstay the key's hard limits."""
        c = self._s_counter
        if c >= self._s_limit or now > self._s_deadline:
            self._send_refusal(c)
        size = len(content)
        if size > self._fast_max:
            tail = self._big_tail(rtype, size)
        else:
            tail = self._tails[rtype][size % self._block]
        self._s_counter = c + 1
        return _HEADER + self._s_encrypt(c.to_bytes(12, "big"), content + tail, self._aad)

    def _big_tail(self, rtype: int, size: int) -> bytes:
        """Type byte and padding for content near the record limit (padding capped there)."""
        if size > MAX_CONTENT:
            raise LocalProtocolError(ErrorCode.oversize, f"record content above {MAX_CONTENT} bytes")
        return bytes((rtype,)) + bytes(padded_length(size, self._block) - size - 1)

    def _send_refusal(self, c: int) -> None:
        if self._s_limit == -1:
            raise LocalProtocolError(ErrorCode.closed, "record layer has failed")
        self.failed = True
        self._s_limit = -1
        if c >= self._cfg.max_records:
            raise LocalProtocolError(ErrorCode.counter_exhausted, "session record counter exhausted")
        raise LocalProtocolError(ErrorCode.rekey_overdue, "refusing to overstay the key's limits")

    def needs_rekey(self, now: float) -> bool:
        records = self._s_counter - self._s_epoch_first
        return (
            records >= self._cfg.rekey_after_records or now - self._s_epoch_start >= self._cfg.rekey_after_s
        )

    def _rekey(self, now: float) -> bytes:
        record = self.seal(REKEY, b"", now)
        self._set_send(next_secret(self._s_secret), now)
        self.rekeys_sent += 1
        return record

    def seal_all(self, rtype: int, content: bytes, now: float) -> list[bytes]:
        """Seal one record, preceded by a REKEY record (and a key switch) when one is due."""
        if self.needs_rekey(now):
            return [self._rekey(now), self.seal(rtype, content, now)]
        return [self.seal(rtype, content, now)]

    def seal_error(self, code: ErrorCode, now: float) -> bytes | None:
        """An encrypted ERROR record, or None when the send side can no longer seal anything."""
        if not self.can_send or now > self._s_deadline:
            return None
        return self.seal(ERROR, _U16.pack(code), now)

    # -- clock ---------------------------------------------------------------------------------

    def next_deadline(self) -> float:
        """When `handle_timer` next has something to do (monotonic seconds)."""
        if self._s_limit == -1:
            return float("inf")
        return min(self._s_epoch_start + self._cfg.rekey_after_s, self._s_idle_since + self._cfg.keepalive_s)

    def handle_timer(self, now: float) -> list[bytes]:
        """Records that are due at `now`: a time-based REKEY, or a KEEPALIVE on an idle send side."""
        if self._s_limit == -1:
            return []
        # Same expressions as next_deadline(), so a timer fired at that deadline always acts.
        if now >= self._s_epoch_start + self._cfg.rekey_after_s:
            return [self._rekey(now)]
        if self._s_counter != self._s_idle_count:  # something was sent since: not idle
            self._s_idle_count, self._s_idle_since = self._s_counter, now
            return []
        if now >= self._s_idle_since + self._cfg.keepalive_s:
            record = self.seal(KEEPALIVE, b"", now)
            self._s_idle_count, self._s_idle_since = self._s_counter, now
            return [record]
        return []

    # -- receiving -----------------------------------------------------------------------------

    def open(self, record: bytes, now: float) -> tuple[RecordType, bytes]:
        """Authenticate and decrypt the next record; enforce order, limits and the record grammar."""
        c = self._r_counter
        if c >= self._r_limit or now > self._r_deadline:
            self._recv_refusal(c)
        n = c.to_bytes(12, "big")
        try:
            if record[0] != HEADER:
                raise IndexError
            inner = self._r_decrypt(n, record[1:], self._aad)
        except InvalidTag:
            raise self._diagnose(record) from None
        except IndexError:
            raise self._fail_remote(ErrorCode.malformed, "not a record (empty or wrong header)") from None
        self._r_counter = c + 1
        inner = inner.rstrip(b"\x00")  # the padding (the same object when there is none)
        try:
            if inner[-1] == DATA:
                return _DATA, inner[:-1]
        except IndexError:
            raise self._fail_remote(ErrorCode.malformed, "record without a type") from None
        return self._control(inner[-1], inner[:-1], now)

    def _recv_refusal(self, c: int) -> None:
        if self._r_limit == -1 and not self.closed_by_peer:
            raise LocalProtocolError(ErrorCode.closed, "record layer has failed")
        if self.closed_by_peer:
            raise self._fail_remote(ErrorCode.unexpected_message, "record after the peer closed the session")
        if c >= self._cfg.max_records:
            raise self._fail_remote(ErrorCode.counter_exhausted, "session record counter exhausted")
        raise self._fail_remote(ErrorCode.rekey_overdue, "peer overstayed its key limits")

    def _control(self, type_byte: int, content: bytes, now: float) -> tuple[RecordType, bytes]:
        kind = _TYPES.get(type_byte)
        if kind is None:
            raise self._fail_remote(ErrorCode.malformed, "unknown record type")
        if kind is RecordType.error:
            if len(content) != 2:
                raise self._fail_remote(ErrorCode.malformed, "ERROR record must carry a 2-byte code")
            self._r_limit = -1  # the peer stops after an ERROR
            self.closed_by_peer = True
            return kind, content
        if content:
            raise self._fail_remote(ErrorCode.malformed, "control record with a payload")
        if kind is RecordType.rekey:
            self._set_recv(next_secret(self._r_secret), now)
            self.rekeys_received += 1
        elif kind is RecordType.close:
            self.closed_by_peer = True
            self._r_limit = -1  # anything after CLOSE takes the slow path
        return kind, content

    def _diagnose(self, record: bytes) -> SessionError:
        """Slow path, only after a tag failure: was it an old or a future counter, or tampering?"""
        if len(record) < OVERHEAD:
            return self._fail_remote(ErrorCode.malformed, "record shorter than header, type and tag")
        body = record[1:]
        for delta, code, what in ((-1, ErrorCode.replay, "replayed"), (1, ErrorCode.reorder, "reordered")):
            for k in range(1, DIAGNOSE_WINDOW + 1):
                other = self._r_counter + delta * k
                if other < self._r_epoch_first:
                    break
                n = other.to_bytes(12, "big")
                try:
                    self._r_decrypt(n, body, self._aad)
                except InvalidTag:
                    continue
                return self._fail_remote(code, f"record counter {what} (expected the next one)")
        return self._fail_remote(ErrorCode.auth_failed, "record failed authentication")


def decode_error_code(content: bytes) -> ErrorCode:
    (value,) = _U16.unpack(content)
    try:
        return ErrorCode(value)
    except ValueError:
        return ErrorCode.internal


_DATA = RecordType.data
# Plain-int record types for the hot path (an IntEnum index costs an int copy per call).
DATA, REKEY, CLOSE, ACCEPT, ERROR, KEEPALIVE = 0x10, 0x11, 0x12, 0x13, 0x14, 0x15
