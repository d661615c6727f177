from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edgebox.store import DatabaseKey, Store
from edgebox.store.errors import (
    AlreadyExistsError,
    InvalidInputError,
    NotFoundError,
    PairingSecretExpiredError,
    PairingSecretLockedError,
    PairingSecretMismatchError,
    PairingSecretUsedError,
)
from edgebox.store.pairing import hash_pairing_secret

from .conftest import FakeClock, public_key


def test_enroll_get_touch_revoke(store: Store, clock: FakeClock) -> None:
    pub = public_key()
    phone = store.phones.enroll("phone-1", pub, "Teller 1")
    assert phone.public_key == pub and not phone.revoked
    assert store.phones.get("phone-1") == phone
    assert store.phones.get_by_public_key(pub) == phone
    clock.advance(10)
    store.phones.touch("phone-1")
    assert store.phones.get("phone-1").last_seen_at == clock()  # type: ignore[union-attr]
    store.phones.touch("phone-1", at=clock() - 100)  # never goes backwards
    assert store.phones.get("phone-1").last_seen_at == clock()  # type: ignore[union-attr]
    revoked = store.phones.revoke("phone-1")
    assert revoked.revoked
    assert store.phones.revoke("phone-1").revoked_at == revoked.revoked_at
    assert store.phones.list_phones() == []
    assert [p.phone_id for p in store.phones.list_phones(include_revoked=True)] == ["phone-1"]
    with pytest.raises(NotFoundError):
        store.phones.touch("phone-1")
    with pytest.raises(AlreadyExistsError):  # a revoked key cannot be re-enrolled under another id
        store.phones.enroll("phone-2", pub, "again")
    with pytest.raises(AlreadyExistsError):
        store.phones.enroll("phone-1", public_key(), "same id")
    with pytest.raises(NotFoundError):
        store.phones.revoke("nobody")


def test_rename(store: Store) -> None:
    store.phones.enroll("phone-1", public_key(), "Teller 1")
    assert store.phones.rename("phone-1", "  Front desk ").name == "Front desk"
    assert store.phones.get("phone-1").name == "Front desk"  # type: ignore[union-attr]
    with pytest.raises(InvalidInputError):
        store.phones.rename("phone-1", "")
    with pytest.raises(InvalidInputError):
        store.phones.rename("phone-1", "x" * 65)
    with pytest.raises(NotFoundError):
        store.phones.rename("nobody", "name")
    store.phones.revoke("phone-1")
    with pytest.raises(NotFoundError):
        store.phones.rename("phone-1", "after revoke")


@pytest.mark.parametrize(
    "bad",
    [b"", b"\x04" * 64, b"\x02" + b"\x01" * 64, b"\x04" + b"\x01" * 64, "not bytes"],
)
def test_bad_public_keys_are_rejected(store: Store, bad: object) -> None:
    with pytest.raises(InvalidInputError):
        store.phones.enroll("phone-1", bad, "x")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "x" * 65, "bad\x00name", "tab\x07"])
def test_bad_names_are_rejected(store: Store, name: str) -> None:
    with pytest.raises(InvalidInputError):
        store.phones.enroll("phone-1", public_key(), name)


@pytest.mark.parametrize("phone_id", ["", "-lead", "x" * 129, "sp ace", "semi;colon", "\u00e9"])
def test_bad_phone_ids_are_rejected(store: Store, phone_id: str) -> None:
    with pytest.raises(InvalidInputError):
        store.phones.enroll(phone_id, public_key(), "ok")


def test_secret_is_single_use(store: Store, clock: FakeClock) -> None:
    h = hash_pairing_secret(b"123456")
    secret = store.pairing.create_secret(h, clock() + 300)
    assert store.db.query_all("SELECT 1 FROM pairing_secrets WHERE secret_hash = ?", (b"123456",)) == []
    used = store.pairing.consume(secret.secret_id, h, phone_id="phone-1")
    assert used.used_at == clock() and used.phone_id == "phone-1"
    with pytest.raises(PairingSecretUsedError):
        store.pairing.consume(secret.secret_id, h)
    with pytest.raises(PairingSecretUsedError):
        store.pairing.consume_by_hash(h)


def test_secret_locks_after_max_failures(store: Store, clock: FakeClock) -> None:
    h = hash_pairing_secret(b"123456")
    secret = store.pairing.create_secret(h, clock() + 300, max_attempts=3)
    wrong = hash_pairing_secret(b"000000")
    left = []
    for _ in range(3):
        with pytest.raises(PairingSecretMismatchError) as err:
            store.pairing.consume(secret.secret_id, wrong)
        left.append(err.value.attempts_left)
    assert left == [2, 1, 0]
    with pytest.raises(PairingSecretLockedError):
        store.pairing.consume(secret.secret_id, h)  # even the right secret
    s = store.pairing.get(secret.secret_id)
    assert s is not None and s.attempts == 3 and s.locked_at is not None and s.used_at is None


def test_record_attempt_counts_external_failures(store: Store, clock: FakeClock) -> None:
    h = hash_pairing_secret(b"x")
    secret = store.pairing.create_secret(h, clock() + 300, max_attempts=2)
    assert store.pairing.record_attempt(secret.secret_id).attempts_left == 1
    assert store.pairing.record_attempt(secret.secret_id).locked_at is not None
    with pytest.raises(PairingSecretLockedError):
        store.pairing.consume(secret.secret_id, h)
    with pytest.raises(NotFoundError):
        store.pairing.record_attempt(9999)


def test_secret_expires(store: Store, clock: FakeClock) -> None:
    h = hash_pairing_secret(b"123456")
    secret = store.pairing.create_secret(h, clock() + 60)
    clock.advance(60)
    with pytest.raises(PairingSecretExpiredError):
        store.pairing.consume(secret.secret_id, h)
    with pytest.raises(InvalidInputError):
        store.pairing.create_secret(hash_pairing_secret(b"y"), clock() - 1)
    with pytest.raises(InvalidInputError):
        store.pairing.create_secret(b"short", clock() + 60)
    with pytest.raises(AlreadyExistsError):
        store.pairing.create_secret(h, clock() + 60)
    assert store.pairing.purge(before=clock() + 1) == 1


def test_pair_phone_is_atomic(store: Store, clock: FakeClock) -> None:
    h = hash_pairing_secret(b"123456")
    taken = public_key()
    store.phones.enroll("phone-0", taken, "first")
    secret = store.pairing.create_secret(h, clock() + 300)
    # enrolment fails (key already enrolled) -> the secret must NOT be used up
    with pytest.raises(AlreadyExistsError):
        store.pair_phone(secret.secret_id, h, phone_id="phone-1", public_key=taken, name="dup")
    assert store.pairing.get(secret.secret_id).used_at is None  # type: ignore[union-attr]
    # wrong secret -> no phone, failure counted
    with pytest.raises(PairingSecretMismatchError):
        store.pair_phone(
            secret.secret_id,
            hash_pairing_secret(b"bad"),
            phone_id="phone-1",
            public_key=public_key(),
            name="x",
        )
    assert store.phones.get("phone-1") is None
    assert store.pairing.get(secret.secret_id).attempts == 1  # type: ignore[union-attr]
    phone = store.pair_phone(secret.secret_id, h, phone_id="phone-1", public_key=public_key(), name="Teller")
    assert phone.phone_id == "phone-1"
    assert store.pairing.get(secret.secret_id).phone_id == "phone-1"  # type: ignore[union-attr]


def test_concurrent_consumers_on_separate_connections_single_winner(
    db_path: Path, key: DatabaseKey, store: Store, clock: FakeClock
) -> None:
    """8 threads, each with its own connection to the same file: exactly one consume succeeds."""
    for round_ in range(5):
        h = hash_pairing_secret(f"secret-{round_}".encode())
        secret = store.pairing.create_secret(h, clock() + 300)
        stores = [Store.open(db_path, key, clock=clock) for _ in range(8)]
        barrier = threading.Barrier(len(stores))
        outcomes: list[str] = []
        lock = threading.Lock()

        def worker(
            s: Store,
            barrier: threading.Barrier = barrier,
            secret_id: int = secret.secret_id,
            h: bytes = h,
            outcomes: list[str] = outcomes,
            lock: threading.Lock = lock,
        ) -> None:
            barrier.wait()
            try:
                s.pairing.consume(secret_id, h)
                result = "ok"
            except PairingSecretUsedError:
                result = "used"
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for s in stores:
            s.close()
        assert sorted(outcomes) == ["ok"] + ["used"] * 7


def test_concurrent_consumers_sharing_one_store(store: Store, clock: FakeClock) -> None:
    h = hash_pairing_secret(b"shared")
    secret = store.pairing.create_secret(h, clock() + 300)
    results: list[bool] = []

    def worker() -> None:
        try:
            store.pairing.consume(secret.secret_id, h)
            results.append(True)
        except PairingSecretUsedError:
            results.append(False)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1 and len(results) == 16
