"""Typed errors of the secure-session protocol.

Theory of operation: each `SessionError` carries a stable wire `code` (the table is in
docs/protocol.md, section 7) and a message that never includes key material, secrets, plaintext or
peer-supplied bytes. As in h11, the error says whose fault it was:

* `RemoteProtocolError`: the peer (or something on the link) broke the protocol: a bad frame, a
  record that fails authentication, a refusal, a peer that overstays its key. The connection fails
  closed, tells the peer why where that is still meaningful, and refuses all further input.
* `LocalProtocolError`: this side used the state machine wrongly (sent before the session was
  established, answered a decision twice, used a closed connection). That is a bug in the caller,
  not evidence against the peer, so a box never counts it as a peer protocol error.
"""

from __future__ import annotations

from enum import IntEnum

from edgebox.errors import EdgeboxError


class ErrorCode(IntEnum):
    """Wire error codes (u16) carried by ERROR messages and records, and used as `SessionError.code`."""

    internal = 1
    malformed = 2  # a message or frame could not be parsed
    unsupported_version = 3
    unexpected_message = 4  # valid message, wrong state
    invalid_point = 5  # not a valid uncompressed P-256 point
    auth_failed = 6  # AEAD tag, signature or MAC did not verify
    box_key_mismatch = 7  # box key does not match the pinned hash (possible MITM)
    phone_unknown = 8
    phone_revoked = 9
    pairing_secret_invalid = 10  # unknown, wrong, expired, used or locked secret (one code: no oracle)
    replay = 11  # record counter lower than expected
    reorder = 12  # record counter higher than expected (gap)
    rekey_overdue = 13  # a key used beyond its record or time limit
    counter_exhausted = 14
    oversize = 15
    frame_sequence = 16  # framing sequence/ack out of range
    frame_window = 17  # peer exceeded the advertised window
    timeout = 18
    closed = 19
    busy = 20  # too many unauthenticated handshakes right now; retry later
    phone_id_conflict = 21  # another enrolled key has this phone id (64-bit collision)


class SessionError(EdgeboxError):
    """A fatal protocol error on one connection (root of the two kinds below)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message, code=code.name)
        self.wire_code = code


class RemoteProtocolError(SessionError):
    """The peer broke the protocol or refused us."""


class LocalProtocolError(SessionError):
    """This side misused the state machine (a bug in the caller)."""
