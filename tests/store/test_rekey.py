from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgebox.store import DatabaseKey, Store
from edgebox.store.documents import ChunkInput
from edgebox.store.errors import WrongKeyError
from edgebox.store.keys import create_key_file

from .conftest import DIM, vec

CHILD = Path(__file__).with_name("rekey_child.py")


def test_rekey_keeps_data_and_retires_the_old_key(db_path: Path, key: DatabaseKey) -> None:
    marker = "REKEY-MARKER-chunk-text-5521"
    with Store.open(db_path, key, create=True, embedding_dim=DIM) as s:
        s.documents.add_document("src", "title", [ChunkInput(marker, vec(1))])
        s.outbox.enqueue("k-1", b"payload-abc")
        new = DatabaseKey.generate()
        s.rekey(new)
        assert s.documents.search(vec(1), 1)[0].text == marker  # usable straight away
        s.outbox.enqueue("k-2", b"after")
    wal = db_path.with_name(db_path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    with pytest.raises(WrongKeyError):
        Store.open(db_path, key)
    with Store.open(db_path, new) as s:
        s.integrity_check()
        assert s.documents.search(vec(1), 1)[0].text == marker
        assert s.outbox.counts()["pending"] == 2
    assert marker.encode() not in db_path.read_bytes()


@pytest.mark.slow
def test_sigkill_during_rekey_leaves_exactly_one_working_key(tmp_path: Path) -> None:
    db = tmp_path / "rk.db"
    keys = {"a": tmp_path / "a.key", "b": tmp_path / "b.key"}
    loaded = {name: create_key_file(path) for name, path in keys.items()}
    rng = np.random.default_rng(3)
    with Store.open(db, loaded["a"], create=True, embedding_dim=64, synchronous="NORMAL") as s:
        for d in range(8):
            vectors = rng.standard_normal((500, 64)).astype(np.float32)
            s.documents.add_document(
                f"d{d}", "t", [ChunkInput(f"chunk {d}-{i} " * 8, vectors[i]) for i in range(500)]
            )
    current, outcomes = "a", set()
    r = random.Random(7)
    for _ in range(8):
        other = "b" if current == "a" else "a"
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(db), str(keys[current]), str(keys[other])],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        time.sleep(r.uniform(0.0, 0.15))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        works = []
        for name in ("a", "b"):
            try:
                with Store.open(db, loaded[name]) as s:
                    s.integrity_check()
                    assert s.documents.chunk_count() == 4000
                works.append(name)
            except WrongKeyError:
                pass
        assert len(works) == 1, works
        outcomes.add("rekeyed" if works[0] == other else "not rekeyed")
        current = works[0]
    assert outcomes  # (which outcomes occur depends on timing; both are consistent)
