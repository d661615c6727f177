"""Store benchmark: SQLCipher vs plain SQLite, and exact vector top-10 at 10k / 100k rows.

Theory of operation
-------------------
* `sqlcipher_vs_sqlite_write` / `_read`: the *same* workload on stdlib `sqlite3` (plaintext) and on
  `sqlcipher3` (raw 256-bit key, SQLCipher 4 defaults), same pragmas as the store (WAL,
  synchronous=FULL, 4096-byte pages), each run on a fresh connection and file, alternating, three
  rounds; the figure is median(sqlcipher) / median(sqlite). The write workload is outbox-like
  inserts of ~600-byte rows in small transactions (fsync-bound, as on the box); `..._write_sync_normal`
  repeats it with synchronous=NORMAL to show the CPU cost of encryption without fsync. The read
  workload is random primary-key lookups plus one full scan over a table ~10x larger than the page
  cache, so most pages are decrypted (SQLCipher decrypts when a page enters the cache).
  Note the two libraries differ in SQLite version (stdlib vs the one bundled in sqlcipher3).
* `vector_top10_ms_10k` / `_100k`: median wall time of `VectorIndex.search(q, 10)` over 10k and
  100k random `dim`-dimensional rows (default 384, MiniLM); results are checked against a full sort.
  `vector_top10_store_ms_10k` is the whole `DocumentRepository.search` path (index + SQL fetch of
  the 10 chunks) on an encrypted store, and `vector_index_load_ms_10k` the one-off load of the
  matrix from the encrypted table. If the optional `sqlite_vec` module is importable, its brute-force
  `vec0` KNN on the same 100k rows inside sqlcipher3 is reported as `sqlite_vec_top10_ms_100k`.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import sqlcipher3

from edgebox.store.documents import ChunkInput
from edgebox.store.keys import DatabaseKey
from edgebox.store.store import Store
from edgebox.store.vectors import VectorIndex, embedding_to_blob

ROUNDS = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dim", type=int, default=384, help="embedding dimension (default 384, MiniLM)")
    parser.add_argument("--queries", type=int, default=50, help="vector queries per size")
    parser.add_argument("--write-tx", type=int, default=300, help="write transactions (10 rows each)")
    parser.add_argument("--read-rows", type=int, default=20_000, help="rows in the read table")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test only)")


def _connect_plain(path: Path, _key: DatabaseKey) -> Any:
    return sqlite3.connect(str(path), isolation_level=None)


def _connect_cipher(path: Path, key: DatabaseKey) -> Any:
    conn = sqlcipher3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA key = " + key.pragma_literal())
    return conn


def _configure(conn: Any, synchronous: str) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA cache_size = -2048")  # 2 MiB page cache (the default is 8 MiB)


_SCHEMA = (
    "CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, state TEXT NOT NULL, "
    "created REAL NOT NULL, payload BLOB NOT NULL)"
)


def _write_workload(conn: Any, transactions: int, payload: bytes) -> float:
    start = time.perf_counter()
    n = 0
    for _ in range(transactions):
        conn.execute("BEGIN IMMEDIATE")
        for _ in range(10):
            conn.execute(
                "INSERT INTO t (k, state, created, payload) VALUES (?, 'pending', ?, ?)",
                (f"key-{n}", time.time(), payload),
            )
            n += 1
        conn.execute("COMMIT")
    return time.perf_counter() - start


def _read_workload(conn: Any, rows: int, lookups: np.ndarray) -> float:
    start = time.perf_counter()
    for i in lookups:
        conn.execute("SELECT k, payload FROM t WHERE id = ?", (int(i),)).fetchone()
    conn.execute("SELECT count(*), sum(length(payload)) FROM t").fetchone()
    conn.execute("SELECT id FROM t WHERE k = ?", (f"key-{rows // 2}",)).fetchone()
    return time.perf_counter() - start


def _connect_sqlcipher_unkeyed(path: Path, _key: DatabaseKey) -> Any:
    return sqlcipher3.connect(str(path), isolation_level=None)


Connect = Callable[[Path, DatabaseKey], Any]
Workload = Callable[[Connect, Path], float]


def _timed_runs(workdir: Path, run: Workload) -> dict[str, float]:
    """Median seconds per library: stdlib sqlite3, sqlcipher3 without key, sqlcipher3 with key."""
    libraries: dict[str, Connect] = {
        "sqlite": _connect_plain,
        "sqlcipher_unkeyed": _connect_sqlcipher_unkeyed,
        "sqlcipher": _connect_cipher,
    }
    times: dict[str, list[float]] = {name: [] for name in libraries}
    for r in range(ROUNDS):
        for name, connect in libraries.items():
            path = workdir / f"{name}-{r}-{time.monotonic_ns()}.db"
            times[name].append(run(connect, path))
    return {name: statistics.median(values) for name, values in times.items()}


def _sql_benchmarks(workdir: Path, args: argparse.Namespace) -> dict[str, float]:
    key = DatabaseKey.generate()
    rng = np.random.default_rng(7)
    payload = rng.integers(0, 256, 600, dtype=np.uint8).tobytes()
    write_tx = 20 if args.quick else args.write_tx
    read_rows = 500 if args.quick else args.read_rows

    def writer(synchronous: str) -> Callable[[Callable[[Path, DatabaseKey], Any], Path], float]:
        def run(connect: Callable[[Path, DatabaseKey], Any], path: Path) -> float:
            conn = connect(path, key)
            try:
                _configure(conn, synchronous)
                conn.execute(_SCHEMA)
                return _write_workload(conn, write_tx, payload)
            finally:
                conn.close()

        return run

    lookups = rng.integers(1, read_rows + 1, read_rows)

    def reader(connect: Callable[[Path, DatabaseKey], Any], path: Path) -> float:
        conn = connect(path, key)
        try:
            _configure(conn, "NORMAL")
            conn.execute(_SCHEMA)
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO t (k, state, created, payload) VALUES (?, 'pending', 0, ?)",
                ((f"key-{i}", payload + i.to_bytes(4, "little") * 100) for i in range(read_rows)),
            )
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        conn = connect(path, key)  # fresh connection: cold page cache
        try:
            _configure(conn, "FULL")
            return _read_workload(conn, read_rows, lookups)
        finally:
            conn.close()

    write = _timed_runs(workdir, writer("FULL"))
    normal = _timed_runs(workdir, writer("NORMAL"))
    read = _timed_runs(workdir, reader)
    return {
        "sqlcipher_vs_sqlite_write": round(write["sqlcipher"] / write["sqlite"], 3),
        "sqlcipher_vs_sqlite_read": round(read["sqlcipher"] / read["sqlite"], 3),
        "sqlcipher_vs_sqlite_write_sync_normal": round(normal["sqlcipher"] / normal["sqlite"], 3),
        # same library (sqlcipher3) with and without a key: the cost of encryption alone
        "encryption_only_write": round(write["sqlcipher"] / write["sqlcipher_unkeyed"], 3),
        "encryption_only_read": round(read["sqlcipher"] / read["sqlcipher_unkeyed"], 3),
        "sqlite_write_ms": round(write["sqlite"] * 1000, 1),
        "sqlcipher_write_ms": round(write["sqlcipher"] * 1000, 1),
        "sqlite_read_ms": round(read["sqlite"] * 1000, 1),
        "sqlcipher_read_ms": round(read["sqlcipher"] * 1000, 1),
    }


def _median_ms(fn: Callable[[np.ndarray], Any], queries: np.ndarray) -> float:
    fn(queries[0])  # warm-up
    times = []
    for q in queries:
        start = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _vector_index_ms(n: int, dim: int, queries: np.ndarray, rng: np.random.Generator) -> float:
    matrix = rng.standard_normal((n, dim), dtype=np.float32)
    index = VectorIndex(dim, initial_capacity=n)
    index.add_many(list(range(1, n + 1)), matrix)
    # correctness check against a full sort (cosine)
    q = queries[0]
    norm = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    expected = (np.argsort(-(norm @ (q / np.linalg.norm(q))))[:10] + 1).tolist()
    got = [h.id for h in index.search(q, 10)]
    if got != expected:
        raise AssertionError("vector index top-10 differs from the exact answer")
    return _median_ms(lambda v: index.search(v, 10), queries)


def _store_vector_ms(
    workdir: Path, n: int, dim: int, queries: np.ndarray, rng: np.random.Generator
) -> tuple[float, float]:
    key = DatabaseKey.generate()
    path = workdir / "vectors.db"
    with Store.open(path, key, create=True, embedding_dim=dim, synchronous="NORMAL") as store:
        per_doc = 500
        vectors = rng.standard_normal((n, dim), dtype=np.float32)
        for d in range(0, n, per_doc):
            store.documents.add_document(
                f"doc-{d}",
                "bench",
                [ChunkInput(f"chunk {i}", vectors[i]) for i in range(d, min(d + per_doc, n))],
            )
    with Store.open(path, key, embedding_dim=dim) as store:
        start = time.perf_counter()
        store.documents.index_size()  # loads the matrix
        load_ms = (time.perf_counter() - start) * 1000
        search_ms = _median_ms(lambda v: store.documents.search(v, 10), queries)
    return search_ms, load_ms


def _sqlite_vec_ms(
    workdir: Path, n: int, dim: int, queries: np.ndarray, rng: np.random.Generator
) -> float | None:
    try:
        import sqlite_vec  # type: ignore[import-not-found]  # optional, only for this comparison
    except ImportError:
        return None
    key = DatabaseKey.generate()
    conn = _connect_cipher(workdir / "sqlite-vec.db", key)
    try:
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        conn.enable_load_extension(False)
        conn.execute(f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{dim}] distance_metric=cosine)")
        vectors = rng.standard_normal((n, dim), dtype=np.float32)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO v (rowid, embedding) VALUES (?, ?)",
            ((i + 1, embedding_to_blob(vectors[i])) for i in range(n)),
        )
        conn.execute("COMMIT")

        def search(q: np.ndarray) -> Any:
            return conn.execute(
                "SELECT rowid, distance FROM v WHERE embedding MATCH ? AND k = 10", (embedding_to_blob(q),)
            ).fetchall()

        return _median_ms(search, queries)
    finally:
        conn.close()


# -- the box's own workload ------------------------------------------------------------------
# Variants of the SQLCipher settings, each measured against plain SQLite on the same workload.
# What each costs in security is in docs/store.md ("SQLCipher settings on the box").
BOX_VARIANTS: dict[str, dict[str, str]] = {
    "as_shipped": {},  # the store's settings (db.py): cipher_memory_security OFF, 8 MiB cache
    "memory_security_on": {"cipher_memory_security": "ON"},
    "cache_2mib": {"cache_size": "-2000"},
    "cache_32mib": {"cache_size": "-32768"},
}


def _plain_store(path: Path, dim: int) -> Store:
    from edgebox.store.db import Database, _configure
    from edgebox.store.migrations import apply_migrations

    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    _configure(conn, "FULL", 10_000)
    db = Database(conn, path, created=True)
    apply_migrations(db)
    return Store(db, embedding_dim=dim)


def _cipher_store(path: Path, key: DatabaseKey, dim: int, pragmas: dict[str, str]) -> Store:
    store = Store.open(path, key, create=not path.exists(), embedding_dim=dim)
    for name, value in pragmas.items():
        store.db._connection().execute(f"PRAGMA {name} = {value}")
    return store


def _box_workload(store: Store, rng: np.random.Generator, vectors: np.ndarray, iters: int) -> list[float]:
    """What a prompt costs the store on the box: one cache lookup that hits (vector search + hit count
    update, synchronous=FULL + row fetch), one document search (top-3 chunks fetched by id) and one
    prompt-log insert (synchronous=FULL). Returns the seconds per prompt."""
    n = len(vectors)
    out = []
    for i in range(iters):
        noise = np.asarray(rng.standard_normal(vectors.shape[1]), dtype=np.float32) * 0.01
        q = vectors[int(rng.integers(0, n))] + noise
        start = time.perf_counter()
        store.cache.lookup(q, model="m", threshold=0.5)
        store.documents.search(q, 3)
        store.prompt_log.record(
            f"t{time.monotonic_ns()}-{i}", phone_id=None, decision="forwarded", timings_ms={"total": 1.0}
        )
        out.append(time.perf_counter() - start)
    return out


def _box_workload_benchmarks(workdir: Path, dim: int, quick: bool) -> dict[str, Any]:
    key = DatabaseKey.generate()
    rng = np.random.default_rng(5)
    rows = 300 if quick else 3_000
    iters = 30 if quick else 300
    vectors = rng.standard_normal((rows, dim), dtype=np.float32)
    texts = ["".join(chr(97 + int(c)) for c in rng.integers(0, 26, 900)) for _ in range(rows)]

    def populate(store: Store) -> None:
        for i in range(rows):
            store.cache.put("m", f"question {i}", texts[i][:400], vectors[i], ttl_s=86_400)
        for d in range(0, rows, 100):
            store.documents.add_document(
                f"doc-{d}", "bench", [ChunkInput(texts[j], vectors[j]) for j in range(d, min(d + 100, rows))]
            )
        for i in range(rows):
            store.prompt_log.record(
                f"seed-{i}", phone_id=None, decision="forwarded", timings_ms={"total": 1.0}
            )
        store.db.checkpoint("TRUNCATE")

    def one(kind: str, pragmas: dict[str, str], r: int) -> list[float]:
        path = workdir / f"box-{kind}-{r}-{time.monotonic_ns()}.db"

        def opener() -> Store:
            return _plain_store(path, dim) if kind == "plain" else _cipher_store(path, key, dim, pragmas)

        with opener() as store:
            store.db._connection().execute("PRAGMA synchronous = OFF")  # setting up only, not timed
            populate(store)
        with opener() as store:  # a fresh connection: the page cache starts cold, as after a restart
            return _box_workload(store, np.random.default_rng(r), vectors, iters)

    # Per-prompt times pooled over the rounds; the median per prompt is robust to the bursts of other
    # work on a shared machine that a total would absorb.
    times: dict[str, list[float]] = {"plain": [], **{v: [] for v in BOX_VARIANTS}}
    for r in range(ROUNDS):
        times["plain"].extend(one("plain", {}, r))
        for name, pragmas in BOX_VARIANTS.items():
            times[name].extend(one(name, pragmas, r))
    base = statistics.median(times["plain"])
    out: dict[str, Any] = {
        "sqlcipher_vs_sqlite_box_workload": round(statistics.median(times["as_shipped"]) / base, 3),
        "box_workload_sqlite_ms_per_prompt": round(base * 1000, 3),
    }
    for name in BOX_VARIANTS:
        if name != "as_shipped":
            out[f"sqlcipher_vs_sqlite_box_workload_{name}"] = round(statistics.median(times[name]) / base, 3)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    quick = bool(getattr(args, "quick", False))
    dim = int(getattr(args, "dim", 384))
    n_queries = 5 if quick else int(getattr(args, "queries", 50))
    ns = {
        "quick": quick,
        "write_tx": int(getattr(args, "write_tx", 300)),
        "read_rows": int(getattr(args, "read_rows", 20_000)),
    }
    rng = np.random.default_rng(11)
    queries = rng.standard_normal((n_queries, dim), dtype=np.float32)
    small, large = (1_000, 5_000) if quick else (10_000, 100_000)
    workdir = Path(tempfile.mkdtemp(prefix="edgebox-bench-store-"))
    try:
        result: dict[str, Any] = _sql_benchmarks(workdir, argparse.Namespace(**ns))
        # The cold-page figure above (sqlcipher_vs_sqlite_read) stays beside the box's own workload.
        result.update(_box_workload_benchmarks(workdir, dim, quick))
        result["vector_top10_ms_10k"] = round(_vector_index_ms(small, dim, queries, rng), 3)
        result["vector_top10_ms_100k"] = round(_vector_index_ms(large, dim, queries, rng), 3)
        store_ms, load_ms = _store_vector_ms(workdir, small, dim, queries, rng)
        result["vector_top10_store_ms_10k"] = round(store_ms, 3)
        result["vector_index_load_ms_10k"] = round(load_ms, 1)
        vec_ms = _sqlite_vec_ms(workdir, large, dim, queries, rng)
        if vec_ms is not None:
            result["sqlite_vec_top10_ms_100k"] = round(vec_ms, 3)
        result["embedding_dim"] = dim
        result["quick"] = quick
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
