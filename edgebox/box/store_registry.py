"""The box's phone registry on the encrypted store (SQLCipher), shared by the server and the CLI.

Theory of operation: pairing secrets live in the store's `pairing_secrets` table under a random
64-bit id (the QR code's 8 random secret-id bytes, big-endian; the store range-checks it and keeps
it in SQLite's signed INTEGER range, so any 8 bytes a peer sends are looked up, none overflows). The
table holds only psk = pairing_psk(secret). `pairing_psk` returns that hash while the secret is
usable (the handshake mixes it into its keys); failed pairings call `record_attempt`, which locks
the secret at its limit; a completed pairing consumes the secret and enrols the phone in one
transaction, so exactly one phone can win a secret even across processes. Phones are looked up and
compared by full public key; the phone id (a hash prefix) only labels them. Every call is
synchronous SQLite: the server runs them in a worker thread.
"""

from __future__ import annotations

from edgebox.box.registry import PairingOutcome, PhoneStatus
from edgebox.log import get_logger
from edgebox.session.connection import phone_id
from edgebox.session.handshake import SECRET_ID_LEN
from edgebox.session.invite import DEFAULT_MAX_ATTEMPTS, DEFAULT_TTL_SECONDS, PairingInvite, new_secret
from edgebox.store.errors import NotFoundError, PairingSecretError
from edgebox.store.store import Store

log = get_logger("edgebox.box.registry")


def _secret_index(secret_id: bytes) -> int | None:
    """The store key of a peer-supplied secret id, or None if it is not exactly 8 bytes."""
    if len(secret_id) != SECRET_ID_LEN:
        return None
    return int.from_bytes(secret_id, "big")


class StoreRegistry:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create_invite(
        self,
        box_id: bytes,
        box_key_hash: bytes,
        now: float,
        ttl: int = DEFAULT_TTL_SECONDS,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> PairingInvite:
        secret = new_secret()
        expires_at = int(now) + ttl
        draft = PairingInvite(box_id, box_key_hash, bytes(SECRET_ID_LEN), secret, expires_at)
        row = self.store.pairing.create_secret(draft.psk(), expires_at, max_attempts=max_attempts)
        return PairingInvite(
            box_id, box_key_hash, row.secret_id.to_bytes(SECRET_ID_LEN, "big"), secret, expires_at
        )

    def pairing_psk(self, secret_id: bytes, now: float) -> bytes | None:
        index = _secret_index(secret_id)
        return None if index is None else self.store.pairing.usable_hash(index)

    def pairing_failed(self, secret_id: bytes, now: float) -> None:
        index = _secret_index(secret_id)
        if index is None:
            return
        try:
            after = self.store.pairing.record_attempt(index)
        except NotFoundError:
            return
        if after.locked_at is not None:
            log.warning("pairing_secret_locked", secret=after.secret_id, attempts=after.attempts)

    def complete_pairing(self, secret_id: bytes, phone_key: bytes, now: float) -> PairingOutcome:
        pid = phone_id(phone_key)
        existing = self.store.phones.get(pid)
        if existing is not None and existing.public_key != phone_key:
            return PairingOutcome.conflict
        if existing is not None and existing.revoked:
            return PairingOutcome.revoked
        index = _secret_index(secret_id)
        if index is None:
            return PairingOutcome.secret_invalid
        psk = self.store.pairing.usable_hash(index)
        if psk is None:
            return PairingOutcome.secret_invalid
        try:
            if existing is not None:  # same key pairing again: use the secret, keep the enrolment
                self.store.pairing.consume(index, psk, phone_id=pid)
            else:
                self.store.pair_phone(index, psk, phone_id=pid, public_key=phone_key, name=f"phone-{pid}")
        except (PairingSecretError, NotFoundError):
            return PairingOutcome.secret_invalid
        return PairingOutcome.enrolled

    def phone_status(self, phone_key: bytes) -> PhoneStatus:
        phone = self.store.phones.get_by_public_key(phone_key)
        if phone is None:
            return PhoneStatus.unknown
        if phone.revoked:
            return PhoneStatus.revoked
        self.store.phones.touch(phone.phone_id)
        return PhoneStatus.enrolled

    def revoke(self, pid: str) -> bool:
        try:
            self.store.phones.revoke(pid)
        except NotFoundError:
            return False
        return True
