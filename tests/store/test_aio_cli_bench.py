from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edgebox.store import DatabaseKey, Store
from edgebox.store.aio import StoreWorker, run_purge_loop
from edgebox.store.errors import StoreClosedError

from .conftest import DIM, vec


async def test_worker_runs_calls_off_the_loop_in_order(store: Store) -> None:
    worker = StoreWorker(store)
    loop_thread = threading.get_ident()
    seen_threads: set[int] = set()

    def enqueue(i: int) -> int:
        seen_threads.add(threading.get_ident())
        return store.outbox.enqueue(f"k-{i}", b"p").entry_id

    ids = await asyncio.gather(*(worker.call(enqueue, i) for i in range(20)))
    assert ids == list(range(1, 21))  # FIFO on one writer thread
    assert len(seen_threads) == 1 and loop_thread not in seen_threads
    hits = await worker.call(store.documents.search, vec(1), k=3)
    assert hits == []
    await worker.aclose()
    assert store.db.closed
    with pytest.raises(StoreClosedError):
        await worker.call(store.outbox.counts)


async def test_to_thread_concurrency_is_safe(store: Store) -> None:
    # many concurrent asyncio.to_thread calls on one Store: the store's lock serialises them
    await asyncio.gather(*(asyncio.to_thread(store.outbox.enqueue, f"k-{i}", b"p") for i in range(50)))
    claimed = await asyncio.gather(*(asyncio.to_thread(store.outbox.claim, 5) for _ in range(20)))
    keys = [e.idempotency_key for batch in claimed for e in batch]
    assert len(keys) == len(set(keys)) == 50


async def test_purge_loop_runs_and_cancels(store: Store) -> None:
    worker = StoreWorker(store)
    task = asyncio.create_task(run_purge_loop(worker, interval_s=0.01))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await worker.aclose()


def _edgebox(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgebox", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_cli_init_check_purge_and_typed_errors(tmp_path: Path) -> None:
    key_file, db = tmp_path / "db.key", tmp_path / "store.db"
    r = _edgebox("store", "init-key", str(key_file))
    assert r.returncode == 0 and key_file.stat().st_mode & 0o777 == 0o600
    assert _edgebox("store", "init-key", str(key_file)).returncode == 2  # never overwrites

    r = _edgebox("store", "check", "--db", str(db), "--key-file", str(key_file))
    assert r.returncode == 2 and "[store_db_missing]" in r.stderr and not db.exists()

    r = _edgebox("store", "init", "--db", str(db), "--key-file", str(key_file), "--embedding-dim", str(DIM))
    assert r.returncode == 0, r.stderr
    assert _edgebox("store", "init", "--db", str(db), "--key-file", str(key_file)).returncode == 2

    r = _edgebox("store", "check", "--db", str(db), "--key-file", str(key_file))
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (
        info["integrity"] == "ok" and info["embedding_dim"] == DIM and info["cipher_version"].startswith("4.")
    )

    r = _edgebox("store", "purge", "--db", str(db), "--key-file", str(key_file))
    assert r.returncode == 0 and json.loads(r.stdout)["prompt_log_deleted"] == 0

    other = tmp_path / "other.key"
    _edgebox("store", "init-key", str(other))
    r = _edgebox("store", "check", "--db", str(db), "--key-file", str(other))
    assert r.returncode == 2 and "[store_wrong_key]" in r.stderr and "Traceback" not in r.stderr
    assert other.read_bytes().hex() not in r.stderr + r.stdout

    key_file.chmod(0o644)
    r = _edgebox("store", "check", "--db", str(db), "--key-file", str(key_file))
    assert r.returncode == 2 and "[store_key_file_insecure]" in r.stderr


def test_cli_uses_the_systemd_credential(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "edgebox-db-key").write_bytes(os.urandom(32))
    db = tmp_path / "store.db"
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    assert _edgebox("store", "init", "--db", str(db), env=env).returncode == 0
    assert _edgebox("store", "check", "--db", str(db), env=env).returncode == 0
    r = _edgebox("store", "check", "--db", str(db), env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert r.returncode == 2 and "[store_key_missing]" in r.stderr


def test_bench_quick_reports_all_figures() -> None:
    from edgebox.store import bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    result = bench.run(parser.parse_args(["--quick", "--dim", "32"]))
    for name in (
        "sqlcipher_vs_sqlite_read",
        "sqlcipher_vs_sqlite_write",
        "vector_top10_ms_10k",
        "vector_top10_ms_100k",
    ):
        assert isinstance(result[name], float) and result[name] > 0, name
    json.dumps(result)


def test_store_is_reusable_after_key_roundtrip(db_path: Path) -> None:
    key = DatabaseKey.generate()
    Store.open(db_path, key, create=True, embedding_dim=DIM).close()
    with Store.open(db_path, DatabaseKey(bytes.fromhex(key.pragma_literal()[3:-2]), source="x")) as s:
        assert s.embedding_dim == DIM


def test_cli_rekey(tmp_path: Path) -> None:
    old, new, db = tmp_path / "old.key", tmp_path / "new.key", tmp_path / "store.db"
    from edgebox.store.keys import create_key_file, load_key_file

    create_key_file(old)
    create_key_file(new)
    with Store.open(db, load_key_file(old), create=True, embedding_dim=DIM) as s:
        s.outbox.enqueue("k-1", b"p")
    r = _edgebox("store", "rekey", "--db", str(db), "--key-file", str(old), "--new-key-file", str(new))
    assert r.returncode == 0, r.stderr
    r = _edgebox("store", "check", "--db", str(db), "--key-file", str(new))
    assert r.returncode == 0 and json.loads(r.stdout)["outbox"]["pending"] == 1
    r = _edgebox("store", "check", "--db", str(db), "--key-file", str(old))
    assert r.returncode == 2 and "[store_wrong_key]" in r.stderr
