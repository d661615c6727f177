"""Typed errors of the secure-session protocol.

Each `SessionError` carries a stable `code` (the table is in docs/protocol.md, "Error codes") and a
message that never includes key material, secrets, plaintext or peer-supplied bytes. Any error
raised by a state machine is fatal for that connection: the machine moves to a failed state and
refuses further input (fail closed).
"""

from __future__ import annotations

from enum import IntEnum

from edgebox.errors import EdgeboxError


class ErrorCode(IntEnum):
    """Wire error codes (u16) sent in plaintext ERROR messages and used as `SessionError.code`."""

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
    rekey_overdue = 13  # peer exceeded the per-key record or time limit
    counter_exhausted = 14
    oversize = 15
    frame_sequence = 16  # framing sequence/ack out of range
    frame_window = 17  # peer exceeded the advertised window
    timeout = 18
    closed = 19


class SessionError(EdgeboxError):
    """A fatal protocol error on one connection."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message, code=code.name)
        self.wire_code = code
