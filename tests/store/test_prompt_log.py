from __future__ import annotations

from pathlib import Path

import pytest

from edgebox.store import DatabaseKey, Store
from edgebox.store.errors import AlreadyExistsError, InvalidInputError
from edgebox.store.prompt_log import DAY, PromptLogPolicy

from .conftest import DIM, FakeClock, public_key


@pytest.fixture
def text_store(db_path: Path, key: DatabaseKey, clock: FakeClock) -> Store:
    policy = PromptLogPolicy(keep_text=True, retention_s=30 * DAY, text_retention_s=7 * DAY)
    s = Store.open(db_path, key, create=True, embedding_dim=DIM, clock=clock, prompt_log_policy=policy)
    s.phones.enroll("phone-1", public_key(), "Teller")
    return s


def test_record_and_read_back(text_store: Store, clock: FakeClock) -> None:
    e = text_store.prompt_log.record(
        "trace-1",
        phone_id="phone-1",
        decision="allow",
        model="qwen2.5-0.5b",
        timings_ms={"queue": 1.5, "model": 120.0},
        prompt_text="hello",
        answer_text="hi",
    )
    assert text_store.prompt_log.get("trace-1") == e
    assert e.timings_ms == {"queue": 1.5, "model": 120.0}
    with pytest.raises(AlreadyExistsError):
        text_store.prompt_log.record("trace-1", phone_id=None, decision="allow", timings_ms={})
    clock.advance(1)
    text_store.prompt_log.record("trace-2", phone_id="phone-1", decision="block", timings_ms={})
    text_store.prompt_log.record("trace-3", phone_id=None, decision="flag", timings_ms={})
    assert [x.trace_id for x in text_store.prompt_log.recent(limit=10)] == ["trace-3", "trace-2", "trace-1"]
    assert [x.trace_id for x in text_store.prompt_log.recent(phone_id="phone-1")] == ["trace-2", "trace-1"]
    text_store.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"decision": "no spaces allowed"},
        {"timings_ms": {"x": -1}},
        {"timings_ms": {"x": float("nan")}},
        {"timings_ms": {"bad name": 1}},
        {"timings_ms": {f"t{i}": 1 for i in range(33)}},
        {"prompt_text": "x" * 64_001},
    ],
)
def test_bad_entries_are_rejected(text_store: Store, kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"phone_id": None, "decision": "allow", "timings_ms": {}}
    args.update(kwargs)
    with pytest.raises(InvalidInputError):
        text_store.prompt_log.record("trace-x", **args)  # type: ignore[arg-type]
    assert text_store.prompt_log.count() == 0
    text_store.close()


def test_retention_blanks_text_then_deletes_rows(text_store: Store, clock: FakeClock) -> None:
    start = clock()
    for day in range(40):
        text_store.prompt_log.record(
            f"t-{day}",
            phone_id="phone-1",
            decision="allow",
            timings_ms={},
            prompt_text=f"prompt {day}",
            answer_text=f"answer {day}",
            created_at=start + day * DAY,
        )
    clock.now = start + 40 * DAY
    report = text_store.purge()
    # rows older than 30 days are gone: days 0..9 (day 10 is exactly 30 days old: kept)
    assert report.prompt_log_deleted == 10
    # text older than 7 days blanked: days 10..32 (23 rows)
    assert report.prompt_text_cleared == 23
    kept = {e.trace_id: e for e in text_store.prompt_log.recent(limit=100)}
    assert len(kept) == 30
    assert kept["t-32"].prompt_text is None and kept["t-33"].prompt_text == "prompt 33"
    assert text_store.purge() == type(report)(0, 0, 0, 0, 0)  # idempotent
    # purge truncates the WAL so purged text does not linger there
    assert db_wal_size(text_store) == 0
    text_store.close()


def db_wal_size(store: Store) -> int:
    wal = store.db.path.with_name(store.db.path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_policy_validation() -> None:
    with pytest.raises(InvalidInputError):
        PromptLogPolicy(retention_s=0)
    with pytest.raises(InvalidInputError):
        PromptLogPolicy(text_retention_s=float("inf"))
