"""kill -9 at random points: the store stays consistent and the outbox neither loses nor doubles.

A child process (crash_child.py) writes continuously -- outbox enqueue/claim/ack/fail, documents of
40 chunks, prompt log rows, with frequent WAL checkpoints -- and reports each step after its commit.
The test SIGKILLs it at a random moment, 25 times (a few times even before it finished opening),
and after every kill reopens the store and checks:
  * integrity_check, cipher_integrity_check (page HMACs) and foreign_key_check pass;
  * every enqueue the child saw committed is on disk exactly once with its payload; no key exists
    that was never enqueued; the keys form one contiguous range (no holes, no duplicates even though
    each restart replays the last keys);
  * every acknowledged entry is `done` and was never handed out (claimed) again afterwards;
  * every document has all of its chunks (no half-written document), and the vector index agrees
    with the table.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgebox.store import Store
from edgebox.store.keys import create_key_file

from .crash_child import CHUNKS, DIM, payload

KILLS = 25
CHILD = Path(__file__).with_name("crash_child.py")


def _run_and_kill(db: Path, key_file: Path, seed: int, rng: random.Random, wait_ready: bool) -> list[str]:
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(db), str(key_file), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    ready = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())
            if line.strip() == "READY":
                ready.set()
        ready.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    if wait_ready:
        assert ready.wait(30), "child did not start"
        time.sleep(rng.uniform(0.01, 0.4))
    else:
        time.sleep(rng.uniform(0.0, 0.6))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    t.join(10)
    return lines


@pytest.mark.slow
def test_sigkill_at_random_points_keeps_store_consistent(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    key_file = tmp_path / "db.key"
    key = create_key_file(key_file)
    rng = random.Random(20261128)
    confirmed: set[int] = set()
    acked: set[str] = set()
    docs: set[str] = set()
    total_lines = 0
    for run in range(KILLS):
        wait_ready = run == 0 or rng.random() > 0.15
        lines = _run_and_kill(db, key_file, run, rng, wait_ready)
        total_lines += len(lines)
        for line in lines:
            kind, _, arg = line.partition(" ")
            if kind == "E":
                confirmed.add(int(arg))
            elif kind == "C":
                assert arg not in acked, f"{arg} was delivered again after its ack"
            elif kind == "A":
                acked.add(arg)
            elif kind == "D":
                docs.add(arg)
        if not db.exists():
            continue
        with Store.open(db, key) as store:
            store.integrity_check()
            rows = store.db.query_all("SELECT idempotency_key, payload, state FROM outbox")
            on_disk = {r[0]: (bytes(r[1]), r[2]) for r in rows}
            assert len(on_disk) == len(rows)
            numbers = sorted(int(k[2:]) for k in on_disk)
            assert numbers == list(range(len(numbers))), "outbox keys are not one contiguous range"
            if confirmed:
                assert max(numbers) <= max(confirmed) + 1
            for n in confirmed:
                assert on_disk[f"k-{n}"][0] == payload(n), f"enqueued entry k-{n} lost or altered"
            for k in acked:
                assert on_disk[k][1] == "done", f"acked entry {k} is {on_disk[k][1]}"
            assert {state for _, state in on_disk.values()} <= {"pending", "inflight", "done"}
            counts = store.db.query_all(
                "SELECT d.source, count(c.chunk_id) FROM documents d LEFT JOIN chunks c USING (doc_id) "
                "GROUP BY d.doc_id"
            )
            assert all(n == CHUNKS for _, n in counts), "a document was half-written"
            assert docs <= {s for s, _ in counts}
            assert store.documents.index_size() == store.documents.chunk_count()
            assert store.embedding_dim == DIM
    # the test must actually have exercised the paths it claims to
    assert len(confirmed) > 60 and len(acked) > 20 and len(docs) > 15, (
        len(confirmed),
        len(acked),
        len(docs),
    )
    assert total_lines > KILLS
