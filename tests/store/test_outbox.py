from __future__ import annotations

import random

import pytest

from edgebox.store import Store
from edgebox.store.errors import InvalidInputError, NotFoundError, OutboxConflictError, OutboxStateError
from edgebox.store.outbox import BackoffPolicy, OutboxRepository

from .conftest import FakeClock


def test_enqueue_is_idempotent_and_conflicts_are_typed(store: Store) -> None:
    a = store.outbox.enqueue("k-1", b"payload")
    assert store.outbox.enqueue("k-1", b"payload") == a
    with pytest.raises(OutboxConflictError) as err:
        store.outbox.enqueue("k-1", b"other")
    assert b"other" not in str(err.value).encode()
    assert store.outbox.counts()["pending"] == 1
    with pytest.raises(InvalidInputError):
        store.outbox.enqueue("bad key", b"x")
    with pytest.raises(InvalidInputError):
        store.outbox.enqueue("k-2", b"x" * ((1 << 20) + 1))


def test_claim_ack_and_no_redelivery(store: Store, clock: FakeClock) -> None:
    for i in range(5):
        store.outbox.enqueue(f"k-{i}", f"p{i}".encode())
    first = store.outbox.claim(3)
    assert [e.idempotency_key for e in first] == ["k-0", "k-1", "k-2"]
    assert all(e.state == "inflight" and e.attempts == 1 for e in first)
    second = store.outbox.claim(10)
    assert [e.idempotency_key for e in second] == ["k-3", "k-4"]  # claimed ones are not handed out twice
    assert store.outbox.claim(10) == []
    for e in first + second:
        assert store.outbox.ack(e.entry_id).state == "done"
    assert store.outbox.ack(first[0].entry_id).state == "done"  # idempotent
    clock.advance(10_000)
    assert store.outbox.claim(10) == []  # done entries never come back
    # a late duplicate enqueue of a delivered key is recognised, not re-sent
    assert store.outbox.enqueue("k-0", b"p0").state == "done"
    with pytest.raises(NotFoundError):
        store.outbox.ack(999)


def test_fail_backs_off_exponentially_then_dead(store: Store, clock: FakeClock) -> None:
    outbox = OutboxRepository(store.db, clock=clock, backoff=BackoffPolicy(base_s=2, max_s=20, jitter=0))
    e = outbox.enqueue("k", b"p", max_attempts=5)
    delays = []
    for _ in range(4):
        (claimed,) = outbox.claim()
        failed = outbox.fail(claimed.entry_id, error_code="http_503")
        assert failed.state == "pending" and failed.last_error == "http_503"
        delays.append(failed.next_attempt_at - clock())
        assert outbox.claim() == []  # not due yet
        clock.now = failed.next_attempt_at
    assert delays == [2, 4, 8, 16]
    (claimed,) = outbox.claim()
    assert outbox.fail(claimed.entry_id, error_code="http_503").state == "dead"
    clock.advance(10_000)
    assert outbox.claim() == []
    with pytest.raises(OutboxStateError):
        outbox.fail(e.entry_id, error_code="again")


def test_backoff_is_capped_and_jittered() -> None:
    policy = BackoffPolicy(base_s=2, max_s=60, jitter=0.1)
    rng = random.Random(1)
    for attempts in range(1, 30):
        d = policy.delay(attempts, rng)
        assert 0 < d <= 66
    assert policy.delay(30, rng) >= 54


def test_lease_expiry_and_recover_return_claims(store: Store, clock: FakeClock) -> None:
    store.outbox.enqueue("k", b"p")
    (a,) = store.outbox.claim(lease_s=30)
    clock.advance(29)
    assert store.outbox.claim() == []
    clock.advance(1)
    (b,) = store.outbox.claim(lease_s=30)  # the claimer died: re-delivered (at-least-once)
    assert b.entry_id == a.entry_id and b.attempts == 2
    assert store.outbox.recover() == 1
    (c,) = store.outbox.claim()
    assert c.attempts == 3


def test_expiry_and_purge(store: Store, clock: FakeClock) -> None:
    store.outbox.enqueue("old", b"p", ttl_s=60)
    keep = store.outbox.enqueue("new", b"p", ttl_s=10_000)
    clock.advance(60)
    claimed = store.outbox.claim()
    assert [e.idempotency_key for e in claimed] == ["new"]
    assert store.outbox.get_by_key("old").state == "expired"  # type: ignore[union-attr]
    store.outbox.ack(keep.entry_id)
    assert store.outbox.purge(finished_before=clock() + 1) == 2
    assert store.outbox.counts() == {"pending": 0, "inflight": 0, "done": 0, "dead": 0, "expired": 0}


def test_expired_and_dead_entries_are_listed_until_their_sender_is_answered(
    store: Store, clock: FakeClock
) -> None:
    outbox = OutboxRepository(store.db, clock=clock, backoff=BackoffPolicy(base_s=1, jitter=0))
    old = outbox.enqueue("old", b"p", ttl_s=60)
    dead = outbox.enqueue("dead", b"p", max_attempts=1)
    live = outbox.enqueue("live", b"p", ttl_s=10_000)
    assert outbox.failed_unanswered() == []  # nothing expired or given up yet
    clock.advance(60)
    assert [e.idempotency_key for e in outbox.failed_unanswered()] == ["old"]  # expired by the call
    (d,) = outbox.claim(1)  # "old" is expired now: the next due entry is "dead"
    assert d.entry_id == dead.entry_id and outbox.fail(d.entry_id, error_code="x").state == "dead"
    assert [e.entry_id for e in outbox.failed_unanswered()] == [old.entry_id, dead.entry_id]
    assert not outbox.answer_failed(live.entry_id, phone_id="p", request_id="r", done_json="{}")
    assert outbox.answer_failed(old.entry_id, phone_id="p", request_id="r1", done_json='{"x":1}')
    assert not outbox.answer_failed(old.entry_id, phone_id="p", request_id="r1", done_json="{}")  # once
    assert [e.entry_id for e in outbox.failed_unanswered()] == [dead.entry_id]
    assert outbox.get(old.entry_id).state == "expired"  # type: ignore[union-attr]  # not done
    (waiting,) = outbox.waiting_answers("p")
    assert waiting.request_id == "r1" and waiting.answer == "" and waiting.done_json == '{"x":1}'
    with pytest.raises(NotFoundError):
        outbox.answer_failed(999, phone_id="p", request_id="r", done_json="{}")
