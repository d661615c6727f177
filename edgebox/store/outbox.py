"""The uplink outbox: messages for the cloud, kept until acknowledged, never lost or doubled.

Theory of operation
-------------------
Each entry has a unique `idempotency_key` (also sent to the cloud, which deduplicates on it), an
opaque payload, a state and a retry schedule:

    pending --claim--> inflight --ack--> done
       ^                  |
       +----fail----------+  (attempts < max: next_attempt_at = now + backoff)
                          +--fail--> dead     (attempts == max)
    pending/inflight --(expires_at passed)--> expired

* `enqueue` is idempotent: the same key with the same payload returns the existing entry (whatever
  its state), so a caller that crashed before learning whether its enqueue committed can simply
  enqueue again. The same key with a different payload is `OutboxConflictError`. Because the
  key is UNIQUE in SQL, there can never be two entries for one key, across any number of restarts.
* `claim` moves due entries (pending and due, or inflight whose lease ran out) to inflight with a
  lease, in one transaction, oldest first. A process killed while holding claims loses nothing:
  the entries are still inflight on disk and are claimed again when the lease expires, or at once
  after `recover()` (called at start-up, when no other process can hold claims).
* `ack` marks done (idempotent). `fail` schedules a retry with exponential backoff
  (base * 2^(attempts-1), capped, with optional jitter) or marks the entry dead at `max_attempts`.
* An entry that ends without an answer (expired or dead) is listed by `failed_unanswered` until
  `answer_failed` records the error its sender should get (the box tells the phone, which would
  otherwise wait for an answer that never comes).
* Delivery is therefore at-least-once; the idempotency key makes it effectively once at the cloud.
  Done/dead/expired entries are kept (so a late duplicate enqueue is still recognised) until `purge`
  removes those finished longer ago than the retention.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgebox.store import validation
from edgebox.store.db import Database
from edgebox.store.errors import InvalidInputError, NotFoundError, OutboxConflictError, OutboxStateError

MAX_PAYLOAD_BYTES = 1 << 20
DEFAULT_TTL_S = 7 * 86_400.0
DEFAULT_MAX_ATTEMPTS = 20
STATES = ("pending", "inflight", "done", "dead", "expired")


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    entry_id: int
    idempotency_key: str
    payload: bytes
    state: str
    created_at: float
    attempts: int
    max_attempts: int
    next_attempt_at: float
    lease_until: float | None
    expires_at: float
    finished_at: float | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    base_s: float = 2.0
    max_s: float = 900.0
    jitter: float = 0.1  # +- fraction of the delay

    def delay(self, attempts: int, rng: random.Random) -> float:
        raw = min(self.base_s * (2 ** max(attempts - 1, 0)), self.max_s)
        if self.jitter:
            raw *= 1.0 + rng.uniform(-self.jitter, self.jitter)
        return float(max(raw, 0.0))


@dataclass(frozen=True, slots=True)
class WaitingAnswer:
    entry_id: int
    phone_id: str
    request_id: str
    answer: str
    done_json: str
    created_at: float


# The two ways an entry is read (full rows for `_row`).
_SELECT_BY_ID = (
    "SELECT entry_id, idempotency_key, payload, state, created_at, attempts, max_attempts, "
    "next_attempt_at, lease_until, expires_at, finished_at, last_error FROM outbox WHERE entry_id = ?"
)
_SELECT_BY_KEY = (
    "SELECT entry_id, idempotency_key, payload, state, created_at, attempts, max_attempts, "
    "next_attempt_at, lease_until, expires_at, finished_at, last_error FROM outbox WHERE idempotency_key = ?"
)


def _row(row: Any) -> OutboxEntry:
    values = list(row)
    values[2] = bytes(values[2])
    return OutboxEntry(*values)


class OutboxRepository:
    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        backoff: BackoffPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self.backoff = backoff or BackoffPolicy()
        self._rng = rng or random.Random()  # jitter only; not security relevant  # noqa: S311

    def enqueue(
        self,
        idempotency_key: str,
        payload: bytes,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        not_before: float | None = None,
    ) -> OutboxEntry:
        validation.identifier(idempotency_key, "idempotency key")
        if not isinstance(payload, bytes | bytearray) or len(payload) > MAX_PAYLOAD_BYTES:
            raise InvalidInputError(f"payload must be bytes of at most {MAX_PAYLOAD_BYTES}")
        ttl = validation.timestamp(ttl_s, "ttl_s")
        if ttl <= 0:
            raise InvalidInputError("ttl_s must be positive")
        validation.positive_int(max_attempts, "max_attempts")
        data = bytes(payload)
        with self._db.transaction() as tx:
            now = self._clock()
            due = now if not_before is None else validation.timestamp(not_before, "not_before")
            tx.execute(
                "INSERT INTO outbox (idempotency_key, payload, state, created_at, "
                "max_attempts, next_attempt_at, "
                "expires_at) VALUES (?, ?, 'pending', ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
                (idempotency_key, data, now, max_attempts, due, now + ttl),
            )
            row = tx.execute(
                _SELECT_BY_KEY,
                (idempotency_key,),
            )
            entry = _row(row.fetchone())
            if entry.payload != data:
                raise OutboxConflictError(
                    f"idempotency key {idempotency_key} was already used for a different payload"
                )
        return entry

    def get(self, entry_id: int) -> OutboxEntry | None:
        row = self._db.query_one(
            _SELECT_BY_ID,
            (entry_id,),
        )
        return None if row is None else _row(row)

    def get_by_key(self, idempotency_key: str) -> OutboxEntry | None:
        row = self._db.query_one(
            _SELECT_BY_KEY,
            (idempotency_key,),
        )
        return None if row is None else _row(row)

    def _expire(self, tx: Any, now: float) -> None:
        tx.execute(
            "UPDATE outbox SET state = 'expired', finished_at = ?, lease_until = NULL "
            "WHERE state IN ('pending', 'inflight') AND expires_at <= ?",
            (now, now),
        )

    def claim(self, limit: int = 16, *, lease_s: float = 60.0) -> list[OutboxEntry]:
        """Take up to `limit` due entries (oldest first) and lease them for `lease_s` seconds."""
        validation.positive_int(limit, "limit")
        lease = validation.timestamp(lease_s, "lease_s")
        if lease <= 0:
            raise InvalidInputError("lease_s must be positive")
        with self._db.transaction() as tx:
            now = self._clock()
            self._expire(tx, now)
            rows = tx.execute(
                "UPDATE outbox SET state = 'inflight', attempts = attempts + 1, lease_until = ? "
                "WHERE entry_id IN (SELECT entry_id FROM outbox WHERE "
                "(state = 'pending' AND next_attempt_at <= ?) OR (state = 'inflight' AND lease_until <= ?) "
                "ORDER BY entry_id LIMIT ?) "
                "RETURNING entry_id, idempotency_key, payload, state, created_at, "
                "attempts, max_attempts, next_attempt_at, lease_until, expires_at, "
                "finished_at, last_error",
                (now + lease, now, now, limit),
            ).fetchall()
        return sorted((_row(r) for r in rows), key=lambda e: e.entry_id)

    def claim_head(self, *, lease_s: float = 60.0) -> OutboxEntry | None:
        """In-order replay: lease the oldest unfinished entry, but only when it is due (a head that is
        backing off holds back everything behind it, so entries reach the cloud in enqueue order)."""
        lease = validation.timestamp(lease_s, "lease_s")
        with self._db.transaction() as tx:
            now = self._clock()
            self._expire(tx, now)
            head = tx.execute(
                "SELECT entry_id, state, next_attempt_at, lease_until FROM outbox "
                "WHERE state IN ('pending', 'inflight') ORDER BY entry_id LIMIT 1"
            ).fetchone()
            if head is None:
                return None
            entry_id, state, due, lease_until = head
            if (state == "pending" and due > now) or (state == "inflight" and lease_until > now):
                return None
            row = tx.execute(
                "UPDATE outbox SET state = 'inflight', attempts = attempts + 1, lease_until = ? "
                "WHERE entry_id = ? RETURNING entry_id, idempotency_key, payload, state, created_at, "
                "attempts, max_attempts, next_attempt_at, lease_until, expires_at, finished_at, last_error",
                (now + lease, entry_id),
            ).fetchone()
        return _row(row)

    def claim_entry(self, entry_id: int, *, lease_s: float = 60.0) -> OutboxEntry | None:
        """Lease one given pending entry (the live path sends a request it has just enqueued)."""
        lease = validation.timestamp(lease_s, "lease_s")
        with self._db.transaction() as tx:
            now = self._clock()
            row = tx.execute(
                "UPDATE outbox SET state = 'inflight', attempts = attempts + 1, lease_until = ? "
                "WHERE entry_id = ? AND state = 'pending' RETURNING entry_id, idempotency_key, payload, "
                "state, created_at, attempts, max_attempts, next_attempt_at, lease_until, expires_at, "
                "finished_at, last_error",
                (now + lease, entry_id),
            ).fetchone()
        return None if row is None else _row(row)

    def unfinished(self) -> int:
        row = self._db.query_one("SELECT count(*) FROM outbox WHERE state IN ('pending', 'inflight')")
        return 0 if row is None else int(row[0])

    def ack_with_answer(
        self,
        entry_id: int,
        *,
        phone_id: str,
        request_id: str,
        answer: str,
        done_json: str,
        delivered: bool = False,
    ) -> OutboxEntry:
        """Mark done and keep the answer for the phone, in one transaction (both or neither)."""
        validation.text(answer, "answer", max_len=MAX_PAYLOAD_BYTES, allow_empty=True)
        with self._db.transaction() as tx:
            now = self._clock()
            tx.execute(
                "UPDATE outbox SET state = 'done', finished_at = coalesce(finished_at, ?), "
                "lease_until = NULL WHERE entry_id = ? AND state != 'done'",
                (now, entry_id),
            )
            row = tx.execute(_SELECT_BY_ID, (entry_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no outbox entry {entry_id}")
            tx.execute(
                "INSERT INTO outbox_answers (entry_id, phone_id, request_id, answer, done_json, created_at, "
                "delivered_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (entry_id) DO NOTHING",
                (
                    entry_id,
                    phone_id,
                    request_id,
                    answer,
                    done_json,
                    now,
                    now if delivered else None,
                ),
            )
        return _row(row)

    def failed_unanswered(self, limit: int = 32) -> list[OutboxEntry]:
        """Expire what is due, then list expired/dead entries that have no answer yet, oldest first."""
        validation.positive_int(limit, "limit")
        with self._db.transaction() as tx:
            self._expire(tx, self._clock())
            rows = tx.execute(
                "SELECT o.entry_id, o.idempotency_key, o.payload, o.state, o.created_at, o.attempts, "
                "o.max_attempts, o.next_attempt_at, o.lease_until, o.expires_at, o.finished_at, "
                "o.last_error FROM outbox o LEFT JOIN outbox_answers a ON a.entry_id = o.entry_id "
                "WHERE o.state IN ('dead', 'expired') AND a.entry_id IS NULL ORDER BY o.entry_id LIMIT ?",
                (limit,),
            ).fetchall()
        return [_row(r) for r in rows]

    def answer_failed(self, entry_id: int, *, phone_id: str, request_id: str, done_json: str) -> bool:
        """Keep the error the sender of an expired/dead entry gets (its state stays as it is).
        False when the entry is not expired/dead or already has an answer."""
        with self._db.transaction() as tx:
            row = tx.execute("SELECT state FROM outbox WHERE entry_id = ?", (entry_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no outbox entry {entry_id}")
            if row[0] not in ("dead", "expired"):
                return False
            cur = tx.execute(
                "INSERT INTO outbox_answers (entry_id, phone_id, request_id, answer, done_json, created_at) "
                "VALUES (?, ?, ?, '', ?, ?) ON CONFLICT (entry_id) DO NOTHING",
                (entry_id, phone_id, request_id, done_json, self._clock()),
            )
            return bool(cur.rowcount)

    def waiting_answers(self, phone_id: str, limit: int = 32) -> list[WaitingAnswer]:
        """Answers not yet delivered to this phone, oldest first."""
        rows = self._db.query_all(
            "SELECT entry_id, phone_id, request_id, answer, done_json, created_at FROM outbox_answers "
            "WHERE phone_id = ? AND delivered_at IS NULL ORDER BY entry_id LIMIT ?",
            (phone_id, limit),
        )
        return [WaitingAnswer(int(r[0]), r[1], r[2], r[3], r[4], float(r[5])) for r in rows]

    def answer_for(self, entry_id: int) -> WaitingAnswer | None:
        """The stored answer of an entry (delivered or not): a phone asking again gets it again."""
        row = self._db.query_one(
            "SELECT entry_id, phone_id, request_id, answer, done_json, created_at FROM outbox_answers "
            "WHERE entry_id = ?",
            (entry_id,),
        )
        return (
            None if row is None else WaitingAnswer(int(row[0]), row[1], row[2], row[3], row[4], float(row[5]))
        )

    def mark_delivered(self, entry_id: int) -> None:
        """The phone has the answer (it is kept, encrypted, until the outbox retention purges it, so
        a phone that asks again after a lost link gets it again)."""
        with self._db.transaction() as tx:
            tx.execute(
                "UPDATE outbox_answers SET delivered_at = ? WHERE entry_id = ? AND delivered_at IS NULL",
                (self._clock(), entry_id),
            )

    def ack(self, entry_id: int) -> OutboxEntry:
        """The cloud accepted the entry: done. Idempotent; an expired/dead entry that was
        delivered anyway becomes done too (the cloud has it)."""
        with self._db.transaction() as tx:
            now = self._clock()
            tx.execute(
                "UPDATE outbox SET state = 'done', finished_at = coalesce(finished_at, "
                "?), lease_until = NULL "
                "WHERE entry_id = ? AND state != 'done'",
                (now, entry_id),
            )
            row = tx.execute(
                _SELECT_BY_ID,
                (entry_id,),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no outbox entry {entry_id}")
        return _row(row)

    def fail(self, entry_id: int, *, error_code: str) -> OutboxEntry:
        """A delivery attempt failed: retry later with backoff, or dead after max_attempts."""
        validation.identifier(error_code, "error code")
        with self._db.transaction() as tx:
            now = self._clock()
            row = tx.execute(
                _SELECT_BY_ID,
                (entry_id,),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no outbox entry {entry_id}")
            entry = _row(row)
            if entry.state != "inflight":
                raise OutboxStateError(f"outbox entry {entry_id} is {entry.state}, not inflight")
            if entry.attempts >= entry.max_attempts:
                tx.execute(
                    "UPDATE outbox SET state = 'dead', finished_at = ?, lease_until = NULL, last_error = ? "
                    "WHERE entry_id = ?",
                    (now, error_code, entry_id),
                )
            else:
                delay = self.backoff.delay(entry.attempts, self._rng)
                tx.execute(
                    "UPDATE outbox SET state = 'pending', next_attempt_at = ?, lease_until "
                    "= NULL, last_error = ? "
                    "WHERE entry_id = ?",
                    (now + delay, error_code, entry_id),
                )
            row = tx.execute(
                _SELECT_BY_ID,
                (entry_id,),
            ).fetchone()
        return _row(row)

    def recover(self) -> int:
        """At start-up: return every inflight entry to pending (their claimer is gone)."""
        with self._db.transaction() as tx:
            return int(
                tx.execute(
                    "UPDATE outbox SET state = 'pending', lease_until = NULL WHERE state = 'inflight'"
                ).rowcount
            )

    def counts(self) -> dict[str, int]:
        rows = self._db.query_all("SELECT state, count(*) FROM outbox GROUP BY state")
        counts = dict.fromkeys(STATES, 0)
        counts.update({str(r[0]): int(r[1]) for r in rows})
        return counts

    def purge(self, *, finished_before: float) -> int:
        """Delete done/dead/expired entries finished before the given time."""
        with self._db.transaction() as tx:
            self._expire(tx, self._clock())
            return int(
                tx.execute(
                    "DELETE FROM outbox WHERE state IN ('done', 'dead', 'expired') AND finished_at < ?",
                    (finished_before,),
                ).rowcount
            )
