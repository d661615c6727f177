"""Opening the SQLCipher database safely, and the one connection everything goes through.

Theory of operation
-------------------
`Database.open(path, key, create=...)`:

1. refuses a missing file unless `create=True` (a typo in a path must not yield a new, empty
   store), refuses an empty file unless creating, refuses a plaintext SQLite file;
2. connects with sqlcipher3, sets `PRAGMA key = "x'<64 hex>'"` (raw key: no passphrase KDF) as the
   very first statement, checks `cipher_version` is 4.x and that the cipher settings are the
   SQLCipher 4 defaults (4096-byte pages, HMAC-SHA512 per page, no plaintext header);
3. proves the key by reading `sqlite_master`: a wrong key fails here with `WrongKeyError`, before
   anything is written, so the file is left exactly as it was;
4. sets WAL journaling, `synchronous=FULL` (a commit that returned survives power loss, which the
   outbox relies on), `foreign_keys=ON`, `secure_delete=ON` (purged rows are zeroed, not left in free
   pages), in-memory temp storage and a busy timeout;
5. applies pending forward-only migrations (see `migrations.py`), each in its own transaction.

Threading: one connection per `Database`, opened with `check_same_thread=False` and guarded by a
re-entrant lock. Every read and write takes the lock, so a `Store` may be shared by threads (the box
calls it from one writer thread or `asyncio.to_thread`). Writes use `BEGIN IMMEDIATE`, so a
second process (the CLI's `purge`) waits for the write lock instead of failing half-way; a
transaction is committed or rolled back as a whole. `after_commit` callbacks run while the lock is
still held, which is how the in-memory vector indexes stay exactly in step with committed rows.

Other connections' commits are detected with `PRAGMA data_version`; `external_generation()` lets
in-memory caches notice them and reload.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import sqlcipher3

from edgebox.log import get_logger
from edgebox.store.errors import (
    CipherUnsupportedError,
    CorruptDatabaseError,
    DatabaseMissingError,
    DatabaseOperationError,
    NotEncryptedError,
    StoreClosedError,
    StoreError,
    WrongKeyError,
)
from edgebox.store.keys import DatabaseKey

log = get_logger(__name__)

SQLITE_PLAINTEXT_MAGIC = b"SQLite format 3\x00"
EXPECTED_CIPHER_SETTINGS = {
    "cipher_page_size": "4096",
    "cipher_use_hmac": "1",
    "cipher_hmac_algorithm": "HMAC_SHA512",
    "cipher_plaintext_header_size": "0",
}
SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
DatabaseErrorTypes = (sqlcipher3.DatabaseError,)


class Transaction:
    """The handle a `Database.transaction()` block gets: execute SQL, register after-commit work."""

    __slots__ = ("_callbacks", "_conn")

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._callbacks: list[Callable[[], None]] = []

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self._conn.execute(sql, params)

    def executemany(self, sql: str, seq: Any) -> Any:
        return self._conn.executemany(sql, seq)

    def after_commit(self, fn: Callable[[], None]) -> None:
        self._callbacks.append(fn)


class Database:
    """One keyed SQLCipher connection plus the lock that serialises its use."""

    def __init__(self, conn: Any, path: Path, *, created: bool) -> None:
        self._conn: Any = conn
        self.path = path
        self.created = created
        self._lock = threading.RLock()
        self._tx: Transaction | None = None
        self._data_version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        self._external_generation = 0

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path | str,
        key: DatabaseKey,
        *,
        create: bool = False,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 10_000,
    ) -> Database:
        p = Path(path)
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise StoreError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
        created = _prepare_file(p, create=create)
        try:
            conn = sqlcipher3.connect(
                str(p), isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
            )
        except DatabaseErrorTypes as exc:
            raise StoreError(f"cannot open database {p}: {exc}") from None
        try:
            _key_and_verify(conn, key, p)
            _configure(conn, synchronous.upper(), busy_timeout_ms)
        except BaseException as exc:
            conn.close()
            if created:
                _remove_new_file(p)
            if isinstance(exc, DatabaseErrorTypes):
                raise DatabaseOperationError(f"cannot set up database {p}: {exc}") from None
            raise
        log.info("store_opened", path=str(p), created=created, key_source=key.source)
        return cls(conn, p, created=created)

    # -- use -------------------------------------------------------------------------------------

    def _connection(self) -> Any:
        if self._conn is None:
            raise StoreClosedError("the store is closed")
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """`BEGIN IMMEDIATE` ... `COMMIT` (or `ROLLBACK` on any exception). Nested blocks join the outer."""
        with self._lock:
            conn = self._connection()
            if self._tx is not None:
                yield self._tx
                return
            tx = Transaction(conn)
            try:
                conn.execute("BEGIN IMMEDIATE")
            except DatabaseErrorTypes as exc:
                raise DatabaseOperationError(f"cannot begin a transaction: {exc}") from None
            self._tx = tx
            try:
                yield tx
                conn.execute("COMMIT")
            except BaseException as exc:
                self._tx = None
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, DatabaseErrorTypes):
                    raise DatabaseOperationError(f"database error, transaction rolled back: {exc}") from None
                raise
            self._tx = None
            # (our own commits do not change PRAGMA data_version; only other connections' do)
            for fn in tx._callbacks:
                fn()

    @contextmanager
    def reading(self) -> Iterator[Any]:
        """Hold the lock and read (several statements inside see one consistent snapshot)."""
        with self._lock:
            conn = self._connection()
            if self._tx is not None or conn.in_transaction:
                yield conn
                return
            conn.execute("BEGIN DEFERRED")
            try:
                yield conn
            except DatabaseErrorTypes as exc:
                raise DatabaseOperationError(f"database error while reading: {exc}") from None
            finally:
                conn.execute("COMMIT")

    def query_all(self, sql: str, params: Any = ()) -> list[Any]:
        with self.reading() as conn:
            return list(conn.execute(sql, params).fetchall())

    def query_one(self, sql: str, params: Any = ()) -> Any | None:
        with self.reading() as conn:
            return conn.execute(sql, params).fetchone()

    def external_generation(self) -> int:
        """A counter that increases whenever another connection committed since the last call."""
        with self._lock:
            version = int(self._connection().execute("PRAGMA data_version").fetchone()[0])
            if version != self._data_version:
                self._data_version = version
                self._external_generation += 1
            return self._external_generation

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def integrity_check(self) -> None:
        """`PRAGMA integrity_check` and `PRAGMA cipher_integrity_check` (page HMACs); raise if not ok."""
        with self._lock:
            conn = self._connection()
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
            if rows != ["ok"]:
                raise CorruptDatabaseError(f"integrity_check failed ({len(rows)} problems)")
            # cipher_integrity_check reads the main file's pages directly, not through the WAL. After
            # a rekey that was interrupted before its checkpoint, superseded old-key pages still sit
            # in the main file (harmless: reads come from the WAL), so checkpoint first and only
            # check the HMACs when the checkpoint completed.
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if busy == 0:
                bad = conn.execute("PRAGMA cipher_integrity_check").fetchall()
                if bad:
                    raise CorruptDatabaseError(f"cipher_integrity_check failed ({len(bad)} pages)")
            else:
                log.warning("store_cipher_check_skipped", reason="checkpoint busy (another reader)")
            fk = conn.execute("PRAGMA foreign_key_check").fetchall()
            if fk:
                raise CorruptDatabaseError(f"foreign_key_check failed ({len(fk)} rows)")

    def checkpoint(self, mode: str = "TRUNCATE") -> None:
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise StoreError("invalid checkpoint mode")
        with self._lock:
            self._connection().execute(f"PRAGMA wal_checkpoint({mode})")

    def rekey(self, new_key: DatabaseKey) -> None:
        """Re-encrypt every page with `new_key` (SQLCipher `PRAGMA rekey`, one transaction: after a
        crash the database opens with exactly one of the two keys). The WAL is checkpointed before
        and truncated after, so no frame encrypted with the old key is left behind."""
        with self._lock:
            conn = self._connection()
            if self._tx is not None or conn.in_transaction:
                raise StoreError("cannot rekey inside a transaction")
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.execute("PRAGMA rekey = " + new_key.pragma_literal())
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except DatabaseErrorTypes as exc:
                raise DatabaseOperationError(f"rekey failed: {exc}") from None
        log.info("store_rekeyed", path=str(self.path), key_source=new_key.source)

    def pragma(self, name: str) -> Any:
        """Read a pragma value (diagnostics and tests); `name` must be a plain identifier."""
        if not name.replace("_", "").isalnum():
            raise StoreError("invalid pragma name")
        with self._lock:
            row = self._connection().execute(f"PRAGMA {name}").fetchone()
            return None if row is None else row[0]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def closed(self) -> bool:
        return self._conn is None


def _prepare_file(p: Path, *, create: bool) -> bool:
    """Check the file before SQLCipher touches it. Returns True when a new file was created."""
    wal = p.with_name(p.name + "-wal")
    if not p.exists():
        if not create:
            raise DatabaseMissingError(
                f"database file {p} does not exist (create it with `edgebox store init`)"
            )
        if wal.exists():
            raise CorruptDatabaseError(
                f"{wal} exists without its database file; refusing to create a new one"
            )
        if not p.parent.is_dir():
            raise DatabaseMissingError(f"directory {p.parent} does not exist")
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)  # SQLite gives -wal and -shm the same mode as the database file
        os.close(fd)
        return True
    if not p.is_file():
        raise StoreError(f"{p} is not a regular file")
    size = p.stat().st_size
    if size == 0:
        if not create:
            raise DatabaseMissingError(f"database file {p} is empty (create it with `edgebox store init`)")
        return False
    with p.open("rb") as f:
        head = f.read(len(SQLITE_PLAINTEXT_MAGIC))
    if head == SQLITE_PLAINTEXT_MAGIC:
        raise NotEncryptedError(f"{p} is a plaintext SQLite database, not an encrypted edgebox store")
    return False


def _remove_new_file(p: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with suppress(FileNotFoundError):
            p.with_name(p.name + suffix).unlink()


def _key_and_verify(conn: Any, key: DatabaseKey, p: Path) -> None:
    # SQLCipher otherwise prints "hmac check failed" lines to stderr on a wrong key; we raise instead.
    conn.execute("PRAGMA cipher_log_level = NONE")
    conn.execute("PRAGMA key = " + key.pragma_literal())
    version_row = conn.execute("PRAGMA cipher_version").fetchone()
    version = "" if version_row is None else str(version_row[0])
    if not version.startswith("4."):
        raise CipherUnsupportedError(f"SQLCipher 4.x required, found {version or 'no cipher support'}")
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except DatabaseErrorTypes:
        raise WrongKeyError(
            f"cannot decrypt {p}: wrong database key, or not an edgebox store (file left untouched)"
        ) from None
    for pragma, expected in EXPECTED_CIPHER_SETTINGS.items():
        row = conn.execute(f"PRAGMA {pragma}").fetchone()
        actual = None if row is None else str(row[0])
        if actual != expected:
            raise CipherUnsupportedError(f"unexpected cipher setting {pragma}={actual} (want {expected})")


def _configure(conn: Any, synchronous: str, busy_timeout_ms: int) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"cannot enable WAL journal mode (got {mode})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    if conn.execute("PRAGMA foreign_keys").fetchone()[0] != 1:
        raise StoreError("cannot enable foreign keys")
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    # 8 MiB page cache (SQLite's default is 2 MiB): the box's hot pages (cache rows, recent chunks,
    # the prompt-log tail) stay decrypted in memory instead of being decrypted again on every read.
    # Cost: up to 8 MiB of plaintext pages in the process (docs/store.md, SQLCipher settings).
    conn.execute("PRAGMA cache_size = -8192")
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
