"""The certificate store shared by the CA tooling and every gateway replica: issued certs + revocations.

Theory of operation: revocation is by box (all of a box's certificates, including an older one still
valid after a renewal) or by single serial. The gateway asks `is_revoked(serial, box_id)` on every
request, so the check must be one cheap round trip:
- `SqliteCertStore`: one file (WAL mode) for a single machine; the operator's `edgebox pki revoke`
  and the gateway write the same file, and every check is a fresh indexed query, so a revocation is
  seen by the next request without any cache to go stale.
- `RedisCertStore`: one set of revoked members (`box:<id>`, `serial:<hex>`) checked with a single
  SMISMEMBER, plus a hash of details; all replicas see a revocation at once.
Issued certificates are recorded (serial, box id, expiry) for `edgebox pki list`. One-time enrolment
tokens (`edgebox pki enrol-token`) are kept only as a SHA-256 digest with an expiry, and taking one
deletes it in the same step (sqlite `DELETE … RETURNING`, Redis `GETDEL`), so a token works once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class CertRecord:
    serial: str
    box_id: str
    not_after: str  # ISO 8601 UTC
    revoked: bool


@dataclass(frozen=True, slots=True)
class Revocation:
    subject: str  # "box:<id>" or "serial:<hex>"
    reason: str
    at: float


class CertStore(Protocol):
    async def is_revoked(self, serial: str, box_id: str) -> bool: ...

    async def revoke_box(self, box_id: str, reason: str) -> None: ...

    async def revoke_serial(self, serial: str, reason: str) -> None: ...

    async def reinstate_box(self, box_id: str) -> bool: ...

    async def record_issued(self, serial: str, box_id: str, not_after: dt.datetime) -> None: ...

    async def list_certs(self) -> list[CertRecord]: ...

    async def list_revoked(self) -> list[Revocation]: ...
    async def add_enrol_token(self, digest: str, box_id: str, ttl_s: float) -> None: ...
    async def take_enrol_token(self, digest: str) -> str | None: ...

    async def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS issued (serial TEXT PRIMARY KEY, box_id TEXT NOT NULL, not_after TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revoked (subject TEXT PRIMARY KEY, reason TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS enrol (digest TEXT PRIMARY KEY, box_id TEXT NOT NULL, expires REAL NOT NULL);
"""


class SqliteCertStore:
    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        """`clock` is the wall clock for revocation times and enrolment-token expiry (tests pass a
        simulated one; every process sharing the file must agree on the time)."""
        self._clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def is_revoked_now(self, serial: str, box_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM revoked WHERE subject IN (?, ?) LIMIT 1", ("serial:" + serial, "box:" + box_id)
        ).fetchone()
        return row is not None

    async def is_revoked(self, serial: str, box_id: str) -> bool:
        return self.is_revoked_now(serial, box_id)

    def _revoke(self, subject: str, reason: str) -> None:
        self._db.execute(
            "INSERT INTO revoked (subject, reason, at) VALUES (?, ?, ?) ON CONFLICT(subject) DO NOTHING",
            (subject, reason[:200], self._clock()),
        )

    async def revoke_box(self, box_id: str, reason: str) -> None:
        self._revoke("box:" + box_id, reason)

    async def revoke_serial(self, serial: str, reason: str) -> None:
        self._revoke("serial:" + serial.lower(), reason)

    async def reinstate_box(self, box_id: str) -> bool:
        return self._db.execute("DELETE FROM revoked WHERE subject = ?", ("box:" + box_id,)).rowcount > 0

    async def record_issued(self, serial: str, box_id: str, not_after: dt.datetime) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO issued (serial, box_id, not_after) VALUES (?, ?, ?)",
            (serial, box_id, not_after.astimezone(dt.UTC).isoformat()),
        )

    async def list_certs(self) -> list[CertRecord]:
        rows = self._db.execute("SELECT serial, box_id, not_after FROM issued ORDER BY not_after").fetchall()
        return [CertRecord(s, b, n, self.is_revoked_now(s, b)) for s, b, n in rows]

    async def list_revoked(self) -> list[Revocation]:
        rows = self._db.execute("SELECT subject, reason, at FROM revoked ORDER BY at").fetchall()
        return [Revocation(s, r, a) for s, r, a in rows]

    async def add_enrol_token(self, digest: str, box_id: str, ttl_s: float) -> None:
        now = self._clock()
        self._db.execute("DELETE FROM enrol WHERE expires <= ?", (now,))
        self._db.execute(
            "INSERT INTO enrol (digest, box_id, expires) VALUES (?, ?, ?)", (digest, box_id, now + ttl_s)
        )

    async def take_enrol_token(self, digest: str) -> str | None:
        row = self._db.execute(
            "DELETE FROM enrol WHERE digest = ? RETURNING box_id, expires", (digest,)
        ).fetchone()
        if row is None or row[1] <= self._clock():
            return None
        return str(row[0])

    async def close(self) -> None:
        self._db.close()


class RedisCertStore:
    """`client` is a `redis.asyncio.Redis` (decode_responses not required)."""

    def __init__(self, client: Any, prefix: str = "edgebox:pki") -> None:
        self._r = client
        # one hash tag for all of them: the multi-key transactions below stay on one cluster node
        base = prefix + ":{pki}"
        self._revoked = base + ":revoked"
        self._details = base + ":revoked-details"
        self._issued = base + ":issued"
        self._enrol = base + ":enrol:"

    async def is_revoked(self, serial: str, box_id: str) -> bool:
        hits = await self._r.smismember(self._revoked, ["serial:" + serial, "box:" + box_id])
        return any(hits)

    async def _revoke(self, subject: str, reason: str) -> None:
        detail = json.dumps({"reason": reason[:200], "at": time.time()})
        await (
            self._r.pipeline(transaction=True)
            .sadd(self._revoked, subject)
            .hsetnx(self._details, subject, detail)
            .execute()
        )

    async def revoke_box(self, box_id: str, reason: str) -> None:
        await self._revoke("box:" + box_id, reason)

    async def revoke_serial(self, serial: str, reason: str) -> None:
        await self._revoke("serial:" + serial.lower(), reason)

    async def reinstate_box(self, box_id: str) -> bool:
        subject = "box:" + box_id
        removed, _ = (
            await self._r.pipeline(transaction=True)
            .srem(self._revoked, subject)
            .hdel(self._details, subject)
            .execute()
        )
        return bool(removed)

    async def record_issued(self, serial: str, box_id: str, not_after: dt.datetime) -> None:
        value = json.dumps({"box_id": box_id, "not_after": not_after.astimezone(dt.UTC).isoformat()})
        await self._r.hset(self._issued, serial, value)

    async def list_certs(self) -> list[CertRecord]:
        raw = await self._r.hgetall(self._issued)
        out = []
        for k, v in raw.items():
            serial = k.decode() if isinstance(k, bytes) else str(k)
            d = json.loads(v)
            out.append(
                CertRecord(serial, d["box_id"], d["not_after"], await self.is_revoked(serial, d["box_id"]))
            )
        return sorted(out, key=lambda r: r.not_after)

    async def list_revoked(self) -> list[Revocation]:
        raw = await self._r.hgetall(self._details)
        out = []
        for k, v in raw.items():
            d = json.loads(v)
            out.append(Revocation(k.decode() if isinstance(k, bytes) else str(k), d["reason"], d["at"]))
        return sorted(out, key=lambda r: r.at)

    async def add_enrol_token(self, digest: str, box_id: str, ttl_s: float) -> None:
        await self._r.set(self._enrol + digest, box_id, px=max(1, round(ttl_s * 1000)), nx=True)

    async def take_enrol_token(self, digest: str) -> str | None:
        value = await self._r.getdel(self._enrol + digest)  # single use, atomically
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def close(self) -> None:
        await asyncio.shield(self._r.aclose())


def open_store(pki_dir: Path, redis_url: str | None) -> CertStore:
    if redis_url:
        from edgebox.redisconn import connect

        return RedisCertStore(connect(redis_url, max_connections=4))
    return SqliteCertStore(pki_dir / "certs.sqlite")
