"""Typed errors of the encrypted local store.

Every failure a caller can cause or meet (missing or insecure key, wrong key, bad input, a used
or locked pairing secret, ...) is a `StoreError` with a stable `code`. Messages never contain key
material, secrets, prompt or answer text, or payloads: they name the problem and, where useful, a
path or an identifier that is already public (a phone id, an outbox entry id).
"""

from __future__ import annotations

from edgebox.errors import EdgeboxError


class StoreError(EdgeboxError):
    code = "store_error"


# --- key loading -------------------------------------------------------------------------------


class KeyMissingError(StoreError):
    code = "store_key_missing"


class KeyFileInsecureError(StoreError):
    code = "store_key_file_insecure"


class KeyInvalidError(StoreError):
    code = "store_key_invalid"


class KeyFileExistsError(StoreError):
    code = "store_key_file_exists"


# --- opening the database ----------------------------------------------------------------------


class DatabaseMissingError(StoreError):
    code = "store_db_missing"


class DatabaseExistsError(StoreError):
    code = "store_db_exists"


class WrongKeyError(StoreError):
    """The file exists but cannot be decrypted with the key (wrong key, or not an edgebox store)."""

    code = "store_wrong_key"


class NotEncryptedError(StoreError):
    code = "store_not_encrypted"


class CipherUnsupportedError(StoreError):
    code = "store_cipher_unsupported"


class SchemaTooNewError(StoreError):
    code = "store_schema_too_new"


class MigrationError(StoreError):
    code = "store_migration_failed"


class StoreClosedError(StoreError):
    code = "store_closed"


class CorruptDatabaseError(StoreError):
    code = "store_corrupt"


class DatabaseOperationError(StoreError):
    """SQLite reported an error (disk full, I/O error, busy timeout, constraint). The message is
    SQLite's, which names tables and columns but never values."""

    code = "store_db_error"


# --- repository input and state errors ---------------------------------------------------------


class InvalidInputError(StoreError):
    code = "store_invalid_input"


class EmbeddingDimensionError(InvalidInputError):
    code = "store_embedding_dim_mismatch"


class NotFoundError(StoreError):
    code = "store_not_found"


class AlreadyExistsError(StoreError):
    code = "store_already_exists"


class PairingSecretError(StoreError):
    code = "pairing_secret_invalid"


class PairingSecretExpiredError(PairingSecretError):
    code = "pairing_secret_expired"


class PairingSecretUsedError(PairingSecretError):
    code = "pairing_secret_used"


class PairingSecretLockedError(PairingSecretError):
    code = "pairing_secret_locked"


class PairingSecretMismatchError(PairingSecretError):
    """The presented secret does not match; the failure has been counted."""

    code = "pairing_secret_mismatch"

    def __init__(self, message: str, *, attempts_left: int) -> None:
        super().__init__(message)
        self.attempts_left = attempts_left


class OutboxConflictError(StoreError):
    """An idempotency key was reused with a different payload."""

    code = "outbox_idempotency_conflict"


class OutboxStateError(StoreError):
    code = "outbox_invalid_state"
