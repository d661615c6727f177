"""The prompt log: what was asked, by which phone, how long it took, and what was decided.

Theory of operation: every request gets one row keyed by its trace id, with the phone, the
decision (e.g. allow / flag / block / cached / error), the model and a small dict of timings in
milliseconds. Prompt and answer *text* are written only when `PromptLogPolicy.keep_text` is set --
otherwise they are dropped before reaching SQL, so they never exist on disk, even encrypted.

Retention: `purge(now)` first blanks the text of rows older than `text_retention_s`, then deletes
rows older than `retention_s`. `secure_delete` is on, so purged text is zeroed in the database
pages; the store's purge job also checkpoints the WAL afterwards (see `Store.purge`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgebox.store import validation
from edgebox.store.db import Database
from edgebox.store.errors import AlreadyExistsError, DatabaseOperationError, InvalidInputError, NotFoundError

MAX_TEXT_CHARS = 64_000
MAX_TIMINGS = 32
DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class PromptLogPolicy:
    keep_text: bool = False
    retention_s: float = 30 * DAY
    text_retention_s: float = 7 * DAY

    def __post_init__(self) -> None:
        for what, value in (("retention_s", self.retention_s), ("text_retention_s", self.text_retention_s)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InvalidInputError(f"prompt log {what} must be a positive number of seconds")


@dataclass(frozen=True, slots=True)
class PromptLogEntry:
    trace_id: str
    phone_id: str | None
    created_at: float
    decision: str
    model: str | None
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    prompt_text: str | None = None
    answer_text: str | None = None


@dataclass(frozen=True, slots=True)
class PurgeCounts:
    text_cleared: int
    deleted: int


def _check_timings(timings: Mapping[str, float]) -> str:
    if not isinstance(timings, Mapping) or len(timings) > MAX_TIMINGS:
        raise InvalidInputError(f"timings must be a mapping of at most {MAX_TIMINGS} entries")
    clean: dict[str, float] = {}
    for name, value in timings.items():
        validation.identifier(name, "timing name")
        ms = validation.timestamp(value, "timing value")
        if ms < 0:
            raise InvalidInputError("timing values must not be negative")
        clean[name] = ms
    return json.dumps(clean, sort_keys=True)


def _row(row: Any) -> PromptLogEntry:
    return PromptLogEntry(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), row[6], row[7])


class PromptLogRepository:
    def __init__(
        self, db: Database, *, policy: PromptLogPolicy | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self.policy = policy or PromptLogPolicy()
        self._clock = clock

    def record(
        self,
        trace_id: str,
        *,
        phone_id: str | None,
        decision: str,
        timings_ms: Mapping[str, float],
        model: str | None = None,
        prompt_text: str | None = None,
        answer_text: str | None = None,
        created_at: float | None = None,
    ) -> PromptLogEntry:
        """Log one request. Text arguments are discarded unless the policy keeps text."""
        validation.identifier(trace_id, "trace_id")
        if phone_id is not None:
            validation.identifier(phone_id, "phone_id")
        validation.identifier(decision, "decision")
        if model is not None:
            validation.identifier(model, "model")
        timings_json = _check_timings(timings_ms)
        at = self._clock() if created_at is None else validation.timestamp(created_at, "created_at")
        if self.policy.keep_text:
            for what, value in (("prompt text", prompt_text), ("answer text", answer_text)):
                if value is not None:
                    validation.text(value, what, max_len=MAX_TEXT_CHARS, allow_empty=True)
        else:
            prompt_text = answer_text = None
        try:
            with self._db.transaction() as tx:
                tx.execute(
                    (
                        "INSERT INTO prompt_log (trace_id, phone_id, created_at, decision, "
                        "model, timings_json, prompt_text, answer_text) VALUES (?, ?, ?, ?, ?, "
                        "?, ?, ?)"
                    ),
                    (trace_id, phone_id, at, decision, model, timings_json, prompt_text, answer_text),
                )
        except DatabaseOperationError as exc:
            if "UNIQUE" in str(exc):
                raise AlreadyExistsError(f"trace {trace_id} is already logged") from None
            if "FOREIGN KEY" in str(exc):
                raise NotFoundError(f"phone {phone_id} is not enrolled") from None
            raise
        return PromptLogEntry(
            trace_id, phone_id, at, decision, model, json.loads(timings_json), prompt_text, answer_text
        )

    def get(self, trace_id: str) -> PromptLogEntry | None:
        row = self._db.query_one(
            (
                "SELECT trace_id, phone_id, created_at, decision, model, timings_json, "
                "prompt_text, answer_text FROM prompt_log WHERE trace_id = ?"
            ),
            (trace_id,),
        )
        return None if row is None else _row(row)

    def recent(self, *, limit: int = 100, phone_id: str | None = None) -> list[PromptLogEntry]:
        validation.positive_int(limit, "limit")
        if phone_id is None:
            rows = self._db.query_all(
                (
                    "SELECT trace_id, phone_id, created_at, decision, model, timings_json, "
                    "prompt_text, answer_text FROM prompt_log ORDER BY created_at DESC, "
                    "entry_id DESC LIMIT ?"
                ),
                (limit,),
            )
        else:
            rows = self._db.query_all(
                "SELECT trace_id, phone_id, created_at, decision, model, timings_json, "
                "prompt_text, answer_text FROM prompt_log WHERE phone_id = ? "
                "ORDER BY created_at DESC, entry_id DESC LIMIT ?",
                (phone_id, limit),
            )
        return [_row(r) for r in rows]

    def count(self) -> int:
        row = self._db.query_one("SELECT count(*) FROM prompt_log")
        return 0 if row is None else int(row[0])

    def purge(self, *, now: float | None = None) -> PurgeCounts:
        at = self._clock() if now is None else now
        with self._db.transaction() as tx:
            deleted = tx.execute(
                "DELETE FROM prompt_log WHERE created_at < ?", (at - self.policy.retention_s,)
            ).rowcount
            cleared = tx.execute(
                "UPDATE prompt_log SET prompt_text = NULL, answer_text = NULL "
                "WHERE created_at < ? AND (prompt_text IS NOT NULL OR answer_text IS NOT NULL)",
                (at - self.policy.text_retention_s,),
            ).rowcount
        return PurgeCounts(int(cleared), int(deleted))
