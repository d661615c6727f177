"""Versioned, forward-only schema migrations.

Theory of operation: `MIGRATIONS` is an append-only tuple; migration N brings the schema from
version N-1 to N. The current version is `PRAGMA user_version`, which lives in the database header
and is therefore written in the same transaction as the migration's statements: each migration runs
as `BEGIN IMMEDIATE; <statements>; INSERT INTO schema_migrations; PRAGMA user_version = N; COMMIT`,
so a crash or an error leaves the schema at N-1 or N, never in between. A database whose version is
newer than this code knows is refused (`SchemaTooNewError`): there are no down-migrations, so
rolling the software back never silently runs on a schema it does not understand.

Never edit a released migration; add a new one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from edgebox.log import get_logger
from edgebox.store.db import Database
from edgebox.store.errors import DatabaseOperationError, MigrationError, SchemaTooNewError

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema",
        (
            """CREATE TABLE schema_migrations (
                version INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at REAL NOT NULL
            ) STRICT""",
            """CREATE TABLE store_meta (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL
            ) STRICT""",
            # enrolled phones --------------------------------------------------------------------
            """CREATE TABLE phones (
                phone_id TEXT PRIMARY KEY,
                public_key BLOB NOT NULL UNIQUE CHECK (length(public_key) = 65),
                name TEXT NOT NULL,
                created_at REAL NOT NULL,
                last_seen_at REAL,
                revoked_at REAL
            ) STRICT""",
            # pairing secrets: only a hash is stored ------------------------------------------------
            """CREATE TABLE pairing_secrets (
                secret_id INTEGER PRIMARY KEY,
                secret_hash BLOB NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
                created_at REAL NOT NULL,
                expires_at REAL NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
                max_attempts INTEGER NOT NULL CHECK (max_attempts > 0),
                locked_at REAL,
                used_at REAL,
                phone_id TEXT
            ) STRICT""",
            "CREATE INDEX pairing_secrets_expires ON pairing_secrets(expires_at)",
            # prompt log -----------------------------------------------------------------------------
            """CREATE TABLE prompt_log (
                entry_id INTEGER PRIMARY KEY,
                trace_id TEXT NOT NULL UNIQUE,
                phone_id TEXT REFERENCES phones(phone_id) ON DELETE SET NULL,
                created_at REAL NOT NULL,
                decision TEXT NOT NULL,
                model TEXT,
                timings_json TEXT NOT NULL,
                prompt_text TEXT,
                answer_text TEXT
            ) STRICT""",
            "CREATE INDEX prompt_log_created ON prompt_log(created_at)",
            "CREATE INDEX prompt_log_phone ON prompt_log(phone_id, created_at)",
            # semantic cache -------------------------------------------------------------------------
            """CREATE TABLE semantic_cache (
                entry_id INTEGER PRIMARY KEY,
                model TEXT NOT NULL,
                normalised_prompt TEXT NOT NULL,
                answer TEXT NOT NULL,
                embedding BLOB NOT NULL,
                created_at REAL NOT NULL,
                expires_at REAL NOT NULL,
                hits INTEGER NOT NULL DEFAULT 0,
                last_hit_at REAL,
                UNIQUE (model, normalised_prompt)
            ) STRICT""",
            "CREATE INDEX semantic_cache_expires ON semantic_cache(expires_at)",
            # documents and chunks for local retrieval ---------------------------------------------
            """CREATE TABLE documents (
                doc_id INTEGER PRIMARY KEY,
                source TEXT NOT NULL UNIQUE,
                title TEXT NOT NULL,
                content_sha256 BLOB NOT NULL,
                created_at REAL NOT NULL
            ) STRICT""",
            """CREATE TABLE chunks (
                chunk_id INTEGER PRIMARY KEY,
                doc_id INTEGER NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
                ordinal INTEGER NOT NULL,
                text TEXT NOT NULL,
                embedding BLOB NOT NULL,
                UNIQUE (doc_id, ordinal)
            ) STRICT""",
            # uplink outbox --------------------------------------------------------------------------
            """CREATE TABLE outbox (
                entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
                idempotency_key TEXT NOT NULL UNIQUE,
                payload BLOB NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('pending', 'inflight', 'done', 'dead', 'expired')),
                created_at REAL NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                max_attempts INTEGER NOT NULL,
                next_attempt_at REAL NOT NULL,
                lease_until REAL,
                expires_at REAL NOT NULL,
                finished_at REAL,
                last_error TEXT
            ) STRICT""",
            "CREATE INDEX outbox_due ON outbox(state, next_attempt_at)",
        ),
    ),
    Migration(
        2,
        "answers to queued requests, kept until delivered to the phone",
        (
            """CREATE TABLE outbox_answers (
                entry_id INTEGER PRIMARY KEY REFERENCES outbox(entry_id) ON DELETE CASCADE,
                phone_id TEXT NOT NULL,
                request_id TEXT NOT NULL,
                answer TEXT NOT NULL,
                done_json TEXT NOT NULL,
                created_at REAL NOT NULL,
                delivered_at REAL
            ) STRICT""",
            "CREATE INDEX outbox_answers_waiting ON outbox_answers(phone_id, delivered_at, entry_id)",
        ),
    ),
)


def _validate(migrations: Sequence[Migration]) -> None:
    for index, migration in enumerate(migrations, start=1):
        if migration.version != index:
            raise MigrationError(f"migration list is not contiguous at version {migration.version}")


def schema_version(db: Database) -> int:
    row = db.query_one("PRAGMA user_version")
    return 0 if row is None else int(row[0])


def apply_migrations(db: Database, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the schema up to the newest version; returns it. Each step is one transaction."""
    _validate(migrations)
    target = len(migrations)
    current = schema_version(db)
    if current > target:
        raise SchemaTooNewError(
            f"database schema version {current} is newer than this software supports ({target})"
        )
    for migration in migrations[current:]:
        try:
            with db.transaction() as tx:
                # Re-read inside the write lock: another process may have migrated meanwhile.
                now_version = int(tx.execute("PRAGMA user_version").fetchone()[0])
                if now_version >= migration.version:
                    continue
                for statement in migration.statements:
                    tx.execute(statement)
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, time.time()),
                )
                tx.execute(f"PRAGMA user_version = {int(migration.version)}")
        except DatabaseOperationError as exc:
            raise MigrationError(
                f"migration {migration.version} ({migration.name}) failed and was rolled back: {exc}"
            ) from None
        log.info("store_migrated", version=migration.version, name=migration.name)
    return target
