"""The `Store` facade: one encrypted database, its repositories and the purge job.

Theory of operation: `Store.open(path, key, create=...)` opens the SQLCipher database
(`db.Database`), applies migrations, pins the embedding dimension (recorded in `store_meta` when
the store is created; a later open with another dimension is refused), and builds one repository per
table. All repositories share the connection and its lock (see db.py for the threading model).

`purge()` is the retention job: prompt log retention, expired cache entries, expired pairing
secrets, finished outbox entries; afterwards it checkpoints the WAL (TRUNCATE) so that purged data
does not linger in the WAL file either.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from edgebox.log import get_logger
from edgebox.store.db import Database
from edgebox.store.documents import DocumentRepository
from edgebox.store.errors import EmbeddingDimensionError, PairingSecretMismatchError
from edgebox.store.keys import DatabaseKey
from edgebox.store.migrations import apply_migrations
from edgebox.store.outbox import OutboxRepository
from edgebox.store.pairing import PairingSecretRepository
from edgebox.store.phones import Phone, PhoneRepository
from edgebox.store.prompt_log import DAY, PromptLogPolicy, PromptLogRepository
from edgebox.store.semantic_cache import SemanticCacheRepository

log = get_logger(__name__)

DEFAULT_EMBEDDING_DIM = 384  # all-MiniLM-L6-v2
DEFAULT_OUTBOX_RETENTION_S = 7 * DAY
DEFAULT_PAIRING_RETENTION_S = 1 * DAY


@dataclass(frozen=True, slots=True)
class PurgeReport:
    prompt_text_cleared: int
    prompt_log_deleted: int
    cache_deleted: int
    pairing_secrets_deleted: int
    outbox_deleted: int


class Store:
    def __init__(
        self,
        db: Database,
        *,
        embedding_dim: int,
        prompt_log_policy: PromptLogPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.embedding_dim = embedding_dim
        self._clock = clock
        self.phones = PhoneRepository(db, clock=clock)
        self.pairing = PairingSecretRepository(db, clock=clock)
        self.prompt_log = PromptLogRepository(db, policy=prompt_log_policy, clock=clock)
        self.cache = SemanticCacheRepository(db, embedding_dim, clock=clock)
        self.documents = DocumentRepository(db, embedding_dim, clock=clock)
        self.outbox = OutboxRepository(db, clock=clock)

    @classmethod
    def open(
        cls,
        path: Path | str,
        key: DatabaseKey,
        *,
        create: bool = False,
        embedding_dim: int | None = None,
        prompt_log_policy: PromptLogPolicy | None = None,
        clock: Callable[[], float] = time.time,
        synchronous: str = "FULL",
    ) -> Store:
        """Open (or, only with create=True, create) the store. See db.Database.open for the checks."""
        db = Database.open(path, key, create=create, synchronous=synchronous)
        try:
            apply_migrations(db)
            dim = _pin_embedding_dim(db, embedding_dim)
        except BaseException:
            db.close()
            raise
        return cls(db, embedding_dim=dim, prompt_log_policy=prompt_log_policy, clock=clock)

    def pair_phone(
        self, secret_id: int, presented_hash: bytes, *, phone_id: str, public_key: bytes, name: str
    ) -> Phone:
        """Use a pairing secret and enrol the phone in one transaction (both or neither)."""
        with self.db.transaction() as tx:
            outcome = self.pairing.consume_in(tx, secret_id, presented_hash, phone_id=phone_id)
            phone = (
                None
                if isinstance(outcome, PairingSecretMismatchError)
                else self.phones.enroll_in(tx, phone_id, public_key, name)
            )
        if isinstance(outcome, PairingSecretMismatchError):
            raise outcome
        assert phone is not None
        return phone

    def purge(self, *, now: float | None = None) -> PurgeReport:
        at = self._clock() if now is None else now
        counts = self.prompt_log.purge(now=at)
        report = PurgeReport(
            prompt_text_cleared=counts.text_cleared,
            prompt_log_deleted=counts.deleted,
            cache_deleted=self.cache.purge(now=at),
            pairing_secrets_deleted=self.pairing.purge(before=at - DEFAULT_PAIRING_RETENTION_S),
            outbox_deleted=self.outbox.purge(finished_before=at - DEFAULT_OUTBOX_RETENTION_S),
        )
        self.db.checkpoint("TRUNCATE")
        log.info("store_purged", **{k: getattr(report, k) for k in report.__slots__})
        return report

    def rekey(self, new_key: DatabaseKey) -> None:
        """Re-encrypt the store with a new key (see Database.rekey). Keep the old key until the
        new one is installed as the credential/key file and the store has been reopened with it."""
        self.db.rekey(new_key)

    def integrity_check(self) -> None:
        self.db.integrity_check()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _pin_embedding_dim(db: Database, wanted: int | None) -> int:
    if wanted is not None and (isinstance(wanted, bool) or not isinstance(wanted, int) or wanted <= 0):
        raise EmbeddingDimensionError("embedding dimension must be a positive integer")
    with db.transaction() as tx:
        row = tx.execute("SELECT value FROM store_meta WHERE key = 'embedding_dim'").fetchone()
        if row is None:
            dim = wanted or DEFAULT_EMBEDDING_DIM
            tx.execute("INSERT INTO store_meta (key, value) VALUES ('embedding_dim', ?)", (str(dim),))
            return dim
    stored = int(row[0])
    if wanted is not None and wanted != stored:
        raise EmbeddingDimensionError(f"store was created for {stored}-dimensional embeddings, not {wanted}")
    return stored
