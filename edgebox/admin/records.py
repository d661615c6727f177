"""The admin page's own records: the password hash and the audit trail (encrypted store), set-up codes.

Theory of operation
-------------------
*Account and audit* live in the box's SQLCipher store, in two tables this module owns
(`admin_account`, one row; `admin_audit`, append-only). They are created with
`CREATE TABLE IF NOT EXISTS` in one transaction when `AdminRecords` is built, so they need no slot
in the store's own migration list and a store without them is simply a box never set up. The
password is kept only as an argon2id hash (argon2-cffi's `PasswordHasher`, RFC 9106 low-memory
profile); `verify_password` re-hashes transparently when the parameters change.

Every admin action calls `audit(...)`: time, source address, action, target (a phone id, a
document id, a setting name: never a secret, a password or document text), outcome and a short
detail. The audit trail is read back by the audit page and exported as CSV.

*Set-up codes* are the only way to set the first password (or reset a lost one). A code is made by
`edgebox box admin setup-code`, or placed by provisioning as a text file on the SD card's boot
partition: at start the daemon imports that file once (its hash into the state directory) and
deletes it. Only SHA-256(code) is kept, in `<state>/admin/setup-code.json` (0600), with an expiry;
a code is single use and the throttle of the login form applies to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY

from edgebox.admin.backend import InvalidInput
from edgebox.log import get_logger
from edgebox.store.db import Database

log = get_logger("edgebox.admin.records")

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 256
SETUP_CODE_TTL_S = 3600
BOOT_CODE_TTL_S = 7 * 86_400
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
_CODE_DOMAIN = b"edgebox admin setup code v1\x00"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS admin_account (
        account_id INTEGER PRIMARY KEY CHECK (account_id = 1),
        password_hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        changed_at REAL NOT NULL
    ) STRICT""",
    """CREATE TABLE IF NOT EXISTS admin_audit (
        entry_id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        source TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL DEFAULT '',
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    ) STRICT""",
    "CREATE INDEX IF NOT EXISTS admin_audit_at ON admin_audit(at)",
)


@dataclass(frozen=True)
class AuditEntry:
    entry_id: int
    at: float
    source: str
    action: str
    target: str
    outcome: str
    detail: str


def check_new_password(password: str, confirm: str) -> None:
    if password != confirm:
        raise InvalidInput("the two passwords do not match")
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise InvalidInput(f"the password needs {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")
    if len(set(password)) < 4:
        raise InvalidInput("the password is too repetitive")


class AdminRecords:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        self._hasher = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)
        with db.transaction() as tx:
            for statement in _SCHEMA:
                tx.execute(statement)

    # -- password ----------------------------------------------------------------------------------

    def has_password(self) -> bool:
        return self._db.query_one("SELECT 1 FROM admin_account WHERE account_id = 1") is not None

    def set_password(self, password: str) -> None:
        digest = self._hasher.hash(password)
        now = self._clock()
        with self._db.transaction() as tx:
            tx.execute(
                "INSERT INTO admin_account (account_id, password_hash, created_at, changed_at) "
                "VALUES (1, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET "
                "password_hash = excluded.password_hash, changed_at = excluded.changed_at",
                (digest, now, now),
            )

    def verify_password(self, password: str) -> bool:
        row = self._db.query_one("SELECT password_hash FROM admin_account WHERE account_id = 1")
        if row is None:
            self._hasher.hash(password)  # same work either way: no timing oracle for "no account"
            return False
        stored = str(row[0])
        try:
            self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        if self._hasher.check_needs_rehash(stored):
            with self._db.transaction() as tx:
                tx.execute(
                    "UPDATE admin_account SET password_hash = ? WHERE account_id = 1",
                    (self._hasher.hash(password),),
                )
        return True

    # -- audit -------------------------------------------------------------------------------------

    def audit(
        self, action: str, *, source: str, outcome: str = "ok", target: str = "", detail: str = ""
    ) -> None:
        with self._db.transaction() as tx:
            tx.execute(
                "INSERT INTO admin_audit (at, source, action, target, outcome, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (self._clock(), source[:64], action[:64], target[:200], outcome[:32], detail[:500]),
            )

    def audit_entries(self, *, limit: int = 200, action: str | None = None) -> list[AuditEntry]:
        rows = self._db.query_all(
            "SELECT entry_id, at, source, action, target, outcome, detail FROM admin_audit "
            "WHERE ? IS NULL OR action = ? ORDER BY entry_id DESC LIMIT ?",
            (action, action, max(1, min(limit, 10_000))),
        )
        return [AuditEntry(*r) for r in rows]


# -- set-up codes ------------------------------------------------------------------------------------


def _code_hash(code: str) -> str:
    normalised = "".join(ch for ch in code.upper() if ch.isalnum())
    return hashlib.sha256(_CODE_DOMAIN + normalised.encode()).hexdigest()


def new_setup_code() -> str:
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(15))  # 75 bits
    return "-".join(raw[i : i + 5] for i in range(0, 15, 5))


class SetupCodes:
    """The current set-up code (at most one), kept as a hash in `<state>/admin/setup-code.json`."""

    def __init__(self, directory: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = directory / "setup-code.json"
        self._clock = clock

    def _write(self, digest: str, expires_at: float, origin: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"sha256": digest, "expires_at": expires_at, "origin": origin}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _match_owner(self.path, self.path.parent.parent)

    def create(self, ttl_s: int = SETUP_CODE_TTL_S) -> str:
        """A fresh code (replacing any earlier one); the caller shows it once."""
        code = new_setup_code()
        self._write(_code_hash(code), self._clock() + ttl_s, "cli")
        return code

    def import_boot_file(self, boot_file: Path | None) -> bool:
        """Read a provisioning code from the boot partition once, keep its hash, delete the file."""
        if boot_file is None or not boot_file.is_file():
            return False
        try:
            code = boot_file.read_text(encoding="utf-8", errors="replace").strip()
        finally:
            with contextlib.suppress(OSError):
                boot_file.unlink()
        if len(code) < 8:
            log.warning("admin_boot_setup_code_ignored", reason="too short")
            return False
        self._write(_code_hash(code), self._clock() + BOOT_CODE_TTL_S, "boot")
        log.info("admin_boot_setup_code_imported", path=str(boot_file))
        return True

    def _current(self) -> tuple[str, float] | None:
        try:
            doc = json.loads(self.path.read_text())
            return str(doc["sha256"]), float(doc["expires_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def pending(self) -> bool:
        cur = self._current()
        return cur is not None and cur[1] > self._clock()

    def consume(self, code: str) -> bool:
        """True (and the code is gone) when `code` is the current, unexpired code."""
        cur = self._current()
        if cur is None or cur[1] <= self._clock():
            return False
        if not hmac.compare_digest(cur[0], _code_hash(code)):
            return False
        with contextlib.suppress(OSError):
            self.path.unlink()
        return True


def _match_owner(path: Path, reference: Path) -> None:
    """When root writes into the daemon's state directory, hand the file to the directory's owner."""
    if os.geteuid() != 0:
        return
    with contextlib.suppress(OSError):
        st = reference.stat()
        os.chown(path, st.st_uid, st.st_gid)
        os.chown(path.parent, st.st_uid, st.st_gid)
