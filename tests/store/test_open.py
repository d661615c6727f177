from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from edgebox.store import DatabaseKey, Store
from edgebox.store.db import Database
from edgebox.store.errors import (
    DatabaseMissingError,
    EmbeddingDimensionError,
    MigrationError,
    NotEncryptedError,
    SchemaTooNewError,
    StoreClosedError,
    WrongKeyError,
)
from edgebox.store.migrations import MIGRATIONS, Migration, apply_migrations, schema_version

from .conftest import DIM, public_key


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_wrong_key_fails_cleanly_and_leaves_the_file_untouched(db_path: Path, key: DatabaseKey) -> None:
    with Store.open(db_path, key, create=True, embedding_dim=DIM) as s:
        s.phones.enroll("p1", public_key(), "phone one")
    before = _digest(db_path)
    other = DatabaseKey.generate()
    for create in (False, True):  # even create=True must not replace an existing store
        with pytest.raises(WrongKeyError) as err:
            Store.open(db_path, other, create=create)
        assert err.value.code == "store_wrong_key"
        assert other.pragma_literal()[3:-2] not in str(err.value)
    assert _digest(db_path) == before
    assert not db_path.with_name(db_path.name + "-wal").exists()
    with Store.open(db_path, key) as s:  # the right key still works
        assert s.phones.get("p1") is not None


def test_missing_file_is_created_only_when_asked(db_path: Path, key: DatabaseKey) -> None:
    with pytest.raises(DatabaseMissingError) as err:
        Store.open(db_path, key)
    assert err.value.code == "store_db_missing"
    assert not db_path.exists()
    Store.open(db_path, key, create=True).close()
    assert db_path.stat().st_mode & 0o777 == 0o600
    Store.open(db_path, key).close()


def test_empty_file_is_not_silently_turned_into_a_store(db_path: Path, key: DatabaseKey) -> None:
    db_path.touch()
    with pytest.raises(DatabaseMissingError):
        Store.open(db_path, key)
    assert db_path.stat().st_size == 0


def test_plaintext_sqlite_file_is_refused(db_path: Path, key: DatabaseKey) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(NotEncryptedError):
        Store.open(db_path, key)


def test_garbage_file_is_a_wrong_key_error(db_path: Path, key: DatabaseKey) -> None:
    db_path.write_bytes(b"\x17" * 8192)
    with pytest.raises(WrongKeyError):
        Store.open(db_path, key)


def test_connection_settings(store: Store) -> None:
    assert str(store.db.pragma("cipher_version")).startswith("4.")
    assert store.db.pragma("journal_mode") == "wal"
    assert store.db.pragma("foreign_keys") == 1
    assert store.db.pragma("synchronous") == 2  # FULL
    assert store.db.pragma("secure_delete") == 1
    assert store.db.pragma("cipher_hmac_algorithm") == "HMAC_SHA512"
    assert schema_version(store.db) == len(MIGRATIONS)
    store.integrity_check()


def test_raw_key_mode_skips_the_kdf(db_path: Path, key: DatabaseKey) -> None:
    # A passphrase would run PBKDF2 with 256000 iterations; the raw x'..' key must not.
    assert key.pragma_literal().startswith("\"x'") and len(key.pragma_literal()) == 64 + 5


def test_foreign_keys_are_enforced(store: Store) -> None:
    from edgebox.store.errors import NotFoundError

    with pytest.raises(NotFoundError):
        store.prompt_log.record("t-1", phone_id="ghost", decision="allow", timings_ms={})


def test_failed_migration_rolls_back_completely(db_path: Path, key: DatabaseKey) -> None:
    db = Database.open(db_path, key, create=True)
    try:
        apply_migrations(db, MIGRATIONS)
        bad = (
            *MIGRATIONS,
            Migration(
                len(MIGRATIONS) + 1,
                "broken",
                ("CREATE TABLE half_done (x INTEGER)", "INSERT INTO no_such_table VALUES (1)"),
            ),
        )
        with pytest.raises(MigrationError):
            apply_migrations(db, bad)
        assert schema_version(db) == len(MIGRATIONS)
        assert db.query_one("SELECT name FROM sqlite_master WHERE name = 'half_done'") is None
        good = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "ok", ("CREATE TABLE extra (x INTEGER)",)))
        assert apply_migrations(db, good) == len(MIGRATIONS) + 1
        rows = db.query_all("SELECT version, name FROM schema_migrations ORDER BY version")
        assert [r[0] for r in rows] == list(range(1, len(MIGRATIONS) + 2))
    finally:
        db.close()
    with pytest.raises(SchemaTooNewError):  # the normal code does not know version N+1
        Store.open(db_path, key)


def test_non_contiguous_migrations_are_rejected(db_path: Path, key: DatabaseKey) -> None:
    db = Database.open(db_path, key, create=True)
    try:
        with pytest.raises(MigrationError):
            apply_migrations(db, (Migration(2, "skip", ()),))
    finally:
        db.close()


def test_embedding_dimension_is_pinned_at_creation(db_path: Path, key: DatabaseKey) -> None:
    Store.open(db_path, key, create=True, embedding_dim=16).close()
    with Store.open(db_path, key) as s:
        assert s.embedding_dim == 16
    with pytest.raises(EmbeddingDimensionError):
        Store.open(db_path, key, embedding_dim=384)


def test_closed_store_raises_typed_error(store: Store) -> None:
    store.close()
    with pytest.raises(StoreClosedError):
        store.phones.get("p1")


def test_orphan_wal_without_database_is_not_replaced(db_path: Path, key: DatabaseKey) -> None:
    from edgebox.store.errors import CorruptDatabaseError

    wal = db_path.with_name(db_path.name + "-wal")
    wal.write_bytes(b"\x00" * 100)
    with pytest.raises(CorruptDatabaseError):
        Store.open(db_path, key, create=True)
    assert not db_path.exists()


def test_sqlite_errors_surface_as_typed_errors(store: Store, db_path: Path, key: DatabaseKey) -> None:
    from edgebox.store.errors import DatabaseOperationError

    other = Database.open(db_path, key, busy_timeout_ms=50)
    try:
        with store.db.transaction():  # holds the write lock
            with pytest.raises(DatabaseOperationError) as err, other.transaction() as tx:
                tx.execute("INSERT INTO store_meta (key, value) VALUES ('x', 'y')")
            assert err.value.code == "store_db_error"
        # a failing statement rolls the whole transaction back
        with pytest.raises(DatabaseOperationError), other.transaction() as tx:
            tx.execute("INSERT INTO store_meta (key, value) VALUES ('a', 'b')")
            tx.execute("INSERT INTO no_such_table VALUES (1)")
        assert other.query_one("SELECT 1 FROM store_meta WHERE key = 'a'") is None
    finally:
        other.close()
