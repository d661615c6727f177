"""The database file and its WAL contain none of the stored plaintext."""

from __future__ import annotations

from pathlib import Path

from edgebox.store import DatabaseKey, Store
from edgebox.store.documents import ChunkInput
from edgebox.store.pairing import hash_pairing_secret
from edgebox.store.prompt_log import PromptLogPolicy

from .conftest import DIM, FakeClock, public_key, vec

MARKERS = {
    "phone_name": "Zanzibar-Teller-Phone-7781",
    "prompt": "PROMPT-what-is-the-vault-code-4471",
    "answer": "ANSWER-the-vault-code-is-9921",
    "cache_prompt": "cache-normalised-prompt-qwerty-5531",
    "cache_answer": "cache-answer-asdfgh-7720",
    "doc_source": "file:///branch/policies/overdraft-limits.md",
    "doc_title": "Overdraft-Limits-Policy-Title",
    "chunk": "CHUNK-overdraft-limit-for-gold-customers-is-2500",
    "payload": "OUTBOX-PAYLOAD-customer-3344-balance",
    "idempotency": "idem-key-unique-8899",
    "trace": "trace-id-abcdef-123456",
}


def _files(db_path: Path) -> dict[str, bytes]:
    out = {}
    for suffix in ("", "-wal", "-shm"):
        p = db_path.with_name(db_path.name + suffix)
        if p.exists():
            out[p.name] = p.read_bytes()
    return out


def _assert_no_plaintext(files: dict[str, bytes], secrets: list[bytes]) -> None:
    assert files
    for name, data in files.items():
        for secret in secrets:
            assert secret not in data, f"{secret[:12]!r}... found in {name}"
            # also UTF-16 (SQLite can store text that way)
            assert secret.decode("latin-1").encode("utf-16-le") not in data


def test_db_and_wal_hold_no_plaintext(db_path: Path, key: DatabaseKey, clock: FakeClock) -> None:
    pub = public_key()
    secret_hash = hash_pairing_secret(b"482913")
    embedding = vec(1)
    store = Store.open(
        db_path,
        key,
        create=True,
        embedding_dim=DIM,
        clock=clock,
        prompt_log_policy=PromptLogPolicy(keep_text=True),
    )
    store.phones.enroll("phone-1", pub, MARKERS["phone_name"])
    store.pairing.create_secret(secret_hash, clock() + 60)
    store.prompt_log.record(
        MARKERS["trace"],
        phone_id="phone-1",
        decision="allow",
        timings_ms={"total": 10},
        prompt_text=MARKERS["prompt"],
        answer_text=MARKERS["answer"],
    )
    store.cache.put("minilm", MARKERS["cache_prompt"], MARKERS["cache_answer"], embedding, ttl_s=60)
    store.documents.add_document(
        MARKERS["doc_source"], MARKERS["doc_title"], [ChunkInput(MARKERS["chunk"], embedding)]
    )
    store.outbox.enqueue(MARKERS["idempotency"], MARKERS["payload"].encode())

    # everything is readable through the API ...
    assert store.prompt_log.get(MARKERS["trace"]).prompt_text == MARKERS["prompt"]  # type: ignore[union-attr]
    secrets = [m.encode() for m in MARKERS.values()] + [pub, secret_hash, embedding.tobytes()]
    raw_key = bytes.fromhex(key.pragma_literal()[3:-2])
    secrets += [raw_key, raw_key.hex().encode()]

    # ... but not on disk: while open (data still in the WAL) ...
    files = _files(db_path)
    assert len(files.get("store.db-wal", b"")) > 4096, "the test expects the data to sit in the WAL"
    _assert_no_plaintext(files, secrets)
    # ... and after a checkpoint and close
    store.db.checkpoint("TRUNCATE")
    _assert_no_plaintext(_files(db_path), secrets)
    store.close()
    _assert_no_plaintext(_files(db_path), secrets)


def test_sanity_the_grep_would_find_plaintext_in_a_plain_sqlite_file(tmp_path: Path) -> None:
    # Guard against a test that cannot fail: the same grep finds the marker in a plaintext DB + WAL.
    import sqlite3

    path = tmp_path / "plain.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.execute("INSERT INTO t VALUES (?)", (MARKERS["prompt"],))
    conn.commit()
    data = b"".join(_files(path).values())
    conn.close()
    assert MARKERS["prompt"].encode() in data


def test_prompt_text_is_not_written_unless_configured(db_path: Path, key: DatabaseKey) -> None:
    with Store.open(db_path, key, create=True, embedding_dim=DIM) as store:
        entry = store.prompt_log.record(
            "t-1",
            phone_id=None,
            decision="allow",
            timings_ms={},
            prompt_text="secret prompt",
            answer_text="a",
        )
        assert entry.prompt_text is None and entry.answer_text is None
        row = store.db.query_one("SELECT prompt_text, answer_text FROM prompt_log WHERE trace_id = 't-1'")
        assert row is not None and tuple(row) == (None, None)
