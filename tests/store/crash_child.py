"""Child process for test_crash_safety: writes to the store until it is killed.

It prints one line per step *after* the step's transaction committed (stdout is flushed each time):
    READY            store opened, migrations applied, inflight claims recovered
    E n              outbox entry k-n enqueued
    C k-n            entry claimed (handed to the "uplink")
    A k-n            entry acknowledged (done)
    D source         document with CHUNKS chunks committed
On start it resumes a few keys *before* the highest one on disk, like a producer that does not know
whether its last enqueues committed: idempotent enqueue must not create duplicates.
"""

from __future__ import annotations

import random
import sys

import numpy as np

from edgebox.log import configure_logging
from edgebox.store import Store
from edgebox.store.documents import ChunkInput
from edgebox.store.keys import load_key_file
from edgebox.store.outbox import BackoffPolicy, OutboxRepository

DIM = 16
CHUNKS = 40


def payload(n: int) -> bytes:
    return (f"payload-{n}-".encode()) * 20


def main() -> None:
    configure_logging("warning")  # log lines go to stderr, stdout is the report channel
    db, key_file, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    store = Store.open(db, load_key_file(key_file), create=True, embedding_dim=DIM)
    store.db._connection().execute("PRAGMA wal_autocheckpoint = 16")  # kills also land in checkpoints
    outbox = OutboxRepository(store.db, backoff=BackoffPolicy(base_s=0.001, max_s=0.005, jitter=0))
    outbox.recover()
    row = store.db.query_one("SELECT max(CAST(substr(idempotency_key, 3) AS INTEGER)) FROM outbox")
    assert row is not None
    n = 0 if row[0] is None else max(0, int(row[0]) - 3)

    def out(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    out("READY")
    vectors = np.random.default_rng(seed).standard_normal((CHUNKS, DIM)).astype(np.float32)
    while True:
        entry = outbox.enqueue(f"k-{n}", payload(n))
        assert entry.payload == payload(n)
        out(f"E {n}")
        claimed = outbox.claim(2, lease_s=3600)
        for c in claimed:
            out(f"C {c.idempotency_key}")
        for c in claimed:
            if rng.random() < 0.6:
                outbox.ack(c.entry_id)
                out(f"A {c.idempotency_key}")
            else:
                outbox.fail(c.entry_id, error_code="uplink_down")
        if n % 3 == 0:
            source = f"doc-{seed}-{n}"
            store.documents.add_document(
                source,
                "t",
                [ChunkInput(f"chunk {i} of {source}", vectors[i]) for i in range(CHUNKS)],
                replace=True,
            )
            out(f"D {source}")
        store.prompt_log.record(f"t-{seed}-{n}", phone_id=None, decision="allow", timings_ms={"total": 1.0})
        n += 1


if __name__ == "__main__":
    main()
