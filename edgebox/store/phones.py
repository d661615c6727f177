"""Enrolled phones: who may talk to the box.

A phone is identified by `phone_id` and authenticated by its P-256 public key, stored as the
65-byte uncompressed SEC1 point (0x04 || X || Y) and checked to be on the curve at enrolment. A
public key can be enrolled once. Revocation is a timestamp, never a delete, so the prompt log keeps
its references and a revoked key cannot be re-enrolled silently.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from edgebox.store import validation
from edgebox.store.db import Database, Transaction
from edgebox.store.errors import AlreadyExistsError, InvalidInputError, NotFoundError

PUBLIC_KEY_BYTES = 65
MAX_NAME_CHARS = 64


@dataclass(frozen=True, slots=True)
class Phone:
    phone_id: str
    public_key: bytes
    name: str
    created_at: float
    last_seen_at: float | None
    revoked_at: float | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def _row_to_phone(row: Any) -> Phone:
    return Phone(row[0], bytes(row[1]), row[2], row[3], row[4], row[5])


def check_public_key(public_key: object) -> bytes:
    if not isinstance(public_key, bytes | bytearray) or len(public_key) != PUBLIC_KEY_BYTES:
        raise InvalidInputError(f"public key must be {PUBLIC_KEY_BYTES} bytes (uncompressed P-256)")
    if public_key[0] != 0x04:
        raise InvalidInputError("public key must be an uncompressed P-256 point (0x04 prefix)")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes(public_key))
    except ValueError:
        raise InvalidInputError("public key is not a point on P-256") from None
    return bytes(public_key)


class PhoneRepository:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    def enroll(self, phone_id: str, public_key: bytes, name: str) -> Phone:
        with self._db.transaction() as tx:
            return self.enroll_in(tx, phone_id, public_key, name)

    def enroll_in(self, tx: Transaction, phone_id: str, public_key: bytes, name: str) -> Phone:
        """Enrol inside the caller's transaction (see `Store.pair_phone`)."""
        phone_id = validation.identifier(phone_id, "phone_id")
        key = check_public_key(public_key)
        name = validation.text(name, "phone name", max_len=MAX_NAME_CHARS)
        now = self._clock()
        clash = tx.execute(
            "SELECT 1 FROM phones WHERE phone_id = ? OR public_key = ?", (phone_id, key)
        ).fetchone()
        if clash is not None:
            raise AlreadyExistsError(f"phone {phone_id} or its public key is already enrolled")
        tx.execute(
            "INSERT INTO phones (phone_id, public_key, name, created_at) VALUES (?, ?, ?, ?)",
            (phone_id, key, name, now),
        )
        return Phone(phone_id, key, name, now, None, None)

    def get(self, phone_id: str) -> Phone | None:
        row = self._db.query_one(
            (
                "SELECT phone_id, public_key, name, created_at, last_seen_at, "
                "revoked_at FROM phones WHERE phone_id = ?"
            ),
            (phone_id,),
        )
        return None if row is None else _row_to_phone(row)

    def get_by_public_key(self, public_key: bytes) -> Phone | None:
        row = self._db.query_one(
            (
                "SELECT phone_id, public_key, name, created_at, last_seen_at, "
                "revoked_at FROM phones WHERE public_key = ?"
            ),
            (bytes(public_key),),
        )
        return None if row is None else _row_to_phone(row)

    def list_phones(self, *, include_revoked: bool = False) -> list[Phone]:
        rows = self._db.query_all(
            "SELECT phone_id, public_key, name, created_at, last_seen_at, revoked_at FROM phones "
            "WHERE ? OR revoked_at IS NULL ORDER BY created_at, phone_id",
            (include_revoked,),
        )
        return [_row_to_phone(r) for r in rows]

    def touch(self, phone_id: str, *, at: float | None = None) -> None:
        """Record that the phone was seen (only for an enrolled, non-revoked phone)."""
        seen = self._clock() if at is None else validation.timestamp(at, "last_seen_at")
        with self._db.transaction() as tx:
            cur = tx.execute(
                "UPDATE phones SET last_seen_at = max(coalesce(last_seen_at, 0), ?) "
                "WHERE phone_id = ? AND revoked_at IS NULL",
                (seen, phone_id),
            )
            if cur.rowcount != 1:
                raise NotFoundError(f"no active phone {phone_id}")

    def rename(self, phone_id: str, name: str) -> Phone:
        """Give a phone a new display name (revoked phones keep theirs)."""
        name = validation.text(
            name.strip() if isinstance(name, str) else name, "phone name", max_len=MAX_NAME_CHARS
        )
        with self._db.transaction() as tx:
            cur = tx.execute(
                "UPDATE phones SET name = ? WHERE phone_id = ? AND revoked_at IS NULL", (name, phone_id)
            )
            if cur.rowcount != 1:
                raise NotFoundError(f"no active phone {phone_id}")
        phone = self.get(phone_id)
        assert phone is not None
        return phone

    def revoke(self, phone_id: str) -> Phone:
        """Revoke a phone (idempotent: revoking twice keeps the first time)."""
        with self._db.transaction() as tx:
            cur = tx.execute(
                "UPDATE phones SET revoked_at = coalesce(revoked_at, ?) WHERE phone_id = ?",
                (self._clock(), phone_id),
            )
            if cur.rowcount != 1:
                raise NotFoundError(f"no phone {phone_id}")
            row = tx.execute(
                (
                    "SELECT phone_id, public_key, name, created_at, last_seen_at, "
                    "revoked_at FROM phones WHERE phone_id = ?"
                ),
                (phone_id,),
            ).fetchone()
        return _row_to_phone(row)
