"""Pairing secrets: one-time codes a phone presents to enrol, stored only as a hash.

Theory of operation
-------------------
The box stores `secret_hash` (32 bytes; `hash_pairing_secret()` gives the canonical SHA-256 with a
domain prefix) with an expiry, an attempt counter and a limit. The secret itself is never stored.

`consume(secret_id, presented_hash)` is the one way to use a secret, and it is atomic: inside one
`BEGIN IMMEDIATE` transaction it checks used / locked / expired, compares the hash in constant
time, and either marks the secret used (`UPDATE ... WHERE used_at IS NULL`) or counts a failed
attempt and locks the secret when the limit is reached. Because the write lock is taken before the
checks, two concurrent consumers -- threads or processes -- are serialised and exactly one can
succeed. `consume_by_hash` does the same for protocols that look a secret up by its hash.
`record_attempt` counts a failure detected elsewhere (e.g. a failed key confirmation).

Secret ids are random, never row numbers: `create_secret` draws 8 random bytes (an id names a
secret in the clear, in the QR code and in the handshake's HELLO, so a guessable id would let a
stranger target the newest code). The API speaks the id as the unsigned integer of those 8 bytes
(0 <= id < 2^64); SQLite keeps it as the same bytes read as a signed 64-bit integer. Every id is
range-checked before it reaches SQLite: an out-of-range id is simply not found, never an
OverflowError.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgebox.store import validation
from edgebox.store.db import Database, Transaction
from edgebox.store.errors import (
    AlreadyExistsError,
    DatabaseOperationError,
    InvalidInputError,
    NotFoundError,
    PairingSecretExpiredError,
    PairingSecretLockedError,
    PairingSecretMismatchError,
    PairingSecretUsedError,
)

SECRET_HASH_BYTES = 32
DEFAULT_MAX_ATTEMPTS = 5
_DOMAIN = b"edgebox pairing secret v1\x00"


def hash_pairing_secret(secret: bytes) -> bytes:
    """The canonical 32-byte hash stored for a pairing secret."""
    return hashlib.sha256(_DOMAIN + bytes(secret)).digest()


@dataclass(frozen=True, slots=True)
class PairingSecret:
    secret_id: int
    created_at: float
    expires_at: float
    attempts: int
    max_attempts: int
    locked_at: float | None
    used_at: float | None
    phone_id: str | None

    @property
    def attempts_left(self) -> int:
        return max(self.max_attempts - self.attempts, 0)


_SELECT_BY_ID = (
    "SELECT secret_id, created_at, expires_at, attempts, max_attempts, "
    "locked_at, used_at, phone_id FROM pairing_secrets WHERE secret_id = ?"
)


_ID_SPAN = 1 << 64
_ID_ATTEMPTS = 4  # fresh random ids to try if one collides with an existing secret


def _db_id(secret_id: int) -> int:
    """The SQLite key of an API id (unsigned 64-bit); NotFoundError if out of range."""
    if not isinstance(secret_id, int) or isinstance(secret_id, bool) or not 0 <= secret_id < _ID_SPAN:
        raise NotFoundError("no such pairing secret")
    return secret_id - _ID_SPAN if secret_id >= 1 << 63 else secret_id


def _api_id(stored: int) -> int:
    return stored % _ID_SPAN


def new_secret_id() -> int:
    return int.from_bytes(os.urandom(8), "big")


def _row(row: Any) -> PairingSecret:
    return PairingSecret(_api_id(row[0]), *row[1:])


def _check_hash(value: object) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != SECRET_HASH_BYTES:
        raise InvalidInputError(f"secret hash must be {SECRET_HASH_BYTES} bytes")
    return bytes(value)


class PairingSecretRepository:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    def create_secret(
        self, secret_hash: bytes, expires_at: float, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> PairingSecret:
        h = _check_hash(secret_hash)
        expires = validation.timestamp(expires_at, "expires_at")
        limit = validation.positive_int(max_attempts, "max_attempts")
        now = self._clock()
        if expires <= now:
            raise InvalidInputError("expires_at is in the past")
        for attempt in range(_ID_ATTEMPTS):
            secret_id = new_secret_id()
            try:
                with self._db.transaction() as tx:
                    tx.execute(
                        "INSERT INTO pairing_secrets (secret_id, secret_hash, created_at, expires_at, "
                        "max_attempts) VALUES (?, ?, ?, ?, ?)",
                        (_db_id(secret_id), h, now, expires, limit),
                    )
            except DatabaseOperationError as exc:
                if "secret_hash" in str(exc):
                    raise AlreadyExistsError("a pairing secret with this hash already exists") from None
                if "UNIQUE" in str(exc) and attempt + 1 < _ID_ATTEMPTS:
                    continue  # a 2^-64 id collision: draw again
                raise
            return PairingSecret(secret_id, now, expires, 0, limit, None, None, None)
        raise AssertionError("unreachable")

    def get(self, secret_id: int) -> PairingSecret | None:
        try:
            key = _db_id(secret_id)
        except NotFoundError:
            return None
        row = self._db.query_one(_SELECT_BY_ID, (key,))
        return None if row is None else _row(row)

    def usable_hash(self, secret_id: int) -> bytes | None:
        """The stored hash of a secret that can still be used (not used, locked or expired), else
        None. For protocols whose handshake itself proves knowledge of the secret (the box's
        pairing handshake mixes this hash into its keys); such callers report failures with
        `record_attempt` and finish with `consume`, which re-checks everything atomically."""
        try:
            key = _db_id(secret_id)
        except NotFoundError:
            return None
        row = self._db.query_one(
            "SELECT secret_hash FROM pairing_secrets WHERE secret_id = ? AND used_at IS NULL "
            "AND locked_at IS NULL AND expires_at > ?",
            (key, self._clock()),
        )
        return None if row is None else bytes(row[0])

    def _load(self, tx: Transaction, secret_id: int) -> PairingSecret:
        row = tx.execute(_SELECT_BY_ID, (_db_id(secret_id),)).fetchone()
        if row is None:
            raise NotFoundError(f"no pairing secret {secret_id}")
        return _row(row)

    def _check_usable(self, secret: PairingSecret, now: float) -> None:
        if secret.used_at is not None:
            raise PairingSecretUsedError(f"pairing secret {secret.secret_id} was already used")
        if secret.locked_at is not None:
            raise PairingSecretLockedError(
                f"pairing secret {secret.secret_id} is locked after too many attempts"
            )
        if secret.expires_at <= now:
            raise PairingSecretExpiredError(f"pairing secret {secret.secret_id} has expired")

    def _count_failure(self, tx: Transaction, secret_id: int, now: float) -> PairingSecret:
        tx.execute(
            "UPDATE pairing_secrets SET attempts = attempts + 1, "
            "locked_at = CASE WHEN locked_at IS NULL AND attempts + 1 >= "
            "max_attempts THEN ? ELSE locked_at END "
            "WHERE secret_id = ?",
            (now, _db_id(secret_id)),
        )
        return self._load(tx, secret_id)

    def record_attempt(self, secret_id: int) -> PairingSecret:
        """Count one failed attempt (locks the secret when the limit is reached)."""
        with self._db.transaction() as tx:
            self._load(tx, secret_id)
            return self._count_failure(tx, secret_id, self._clock())

    def consume_in(
        self, tx: Transaction, secret_id: int, presented_hash: bytes, *, phone_id: str | None = None
    ) -> PairingSecret | PairingSecretMismatchError:
        """The body of `consume`, inside the caller's transaction (used to pair and enrol atomically).

        Returns the used secret, or -- after counting the failure in `tx` -- the mismatch error for
        the caller to raise once the transaction has committed. Raises for used/locked/expired.
        """
        h = _check_hash(presented_hash)
        if phone_id is not None:
            validation.identifier(phone_id, "phone_id")
        now = self._clock()
        secret = self._load(tx, secret_id)
        self._check_usable(secret, now)
        stored = tx.execute(
            "SELECT secret_hash FROM pairing_secrets WHERE secret_id = ?", (_db_id(secret_id),)
        )
        if not hmac.compare_digest(bytes(stored.fetchone()[0]), h):
            after = self._count_failure(tx, secret_id, now)
            return PairingSecretMismatchError(
                f"pairing secret {secret_id} does not match", attempts_left=after.attempts_left
            )
        cur = tx.execute(
            "UPDATE pairing_secrets SET used_at = ?, phone_id = ? "
            "WHERE secret_id = ? AND used_at IS NULL AND locked_at IS NULL AND expires_at > ?",
            (now, phone_id, _db_id(secret_id), now),
        )
        if cur.rowcount != 1:  # cannot happen under the write lock; belt and braces
            raise PairingSecretUsedError(f"pairing secret {secret_id} was already used")
        return self._load(tx, secret_id)

    def consume(self, secret_id: int, presented_hash: bytes, *, phone_id: str | None = None) -> PairingSecret:
        """Atomically check and use a secret. Exactly one concurrent caller can succeed.

        Raises PairingSecretUsedError / LockedError / ExpiredError, or PairingSecretMismatchError
        (after counting the failure, which is committed even though the call raises).
        """
        with self._db.transaction() as tx:
            outcome = self.consume_in(tx, secret_id, presented_hash, phone_id=phone_id)
        if isinstance(outcome, PairingSecretMismatchError):
            raise outcome  # raised after COMMIT so the counted attempt is kept
        return outcome

    def consume_by_hash(self, presented_hash: bytes, *, phone_id: str | None = None) -> PairingSecret:
        """Atomically use the secret whose hash matches (single use, unexpired, unlocked)."""
        h = _check_hash(presented_hash)
        row = self._db.query_one("SELECT secret_id FROM pairing_secrets WHERE secret_hash = ?", (h,))
        if row is None:
            raise NotFoundError("no pairing secret matches")
        return self.consume(_api_id(int(row[0])), h, phone_id=phone_id)

    def purge(self, *, before: float) -> int:
        """Delete secrets that expired before `before` (used or not)."""
        with self._db.transaction() as tx:
            return int(tx.execute("DELETE FROM pairing_secrets WHERE expires_at < ?", (before,)).rowcount)
