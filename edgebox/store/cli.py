"""`edgebox store ...`: create the key and the database, check it, run the purge job.

The key comes from the systemd credential `edgebox-db-key` ($CREDENTIALS_DIRECTORY) when present,
else from `--key-file` (mode 0600). It is never read from an option value or environment variable.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from edgebox.store.errors import DatabaseExistsError
from edgebox.store.keys import create_key_file, load_database_key, load_key_file
from edgebox.store.migrations import schema_version
from edgebox.store.prompt_log import DAY, PromptLogPolicy
from edgebox.store.store import DEFAULT_EMBEDDING_DIM, Store

DEFAULT_DB_PATH = "/var/lib/edgebox/store.db"


def _add_db_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=DEFAULT_DB_PATH, help=f"database file (default {DEFAULT_DB_PATH})")
    p.add_argument(
        "--key-file",
        default=None,
        help="development key file (0600); the systemd credential edgebox-db-key takes precedence",
    )


def _open(args: argparse.Namespace, **kwargs: Any) -> Store:
    key = load_database_key(key_file=args.key_file)
    return Store.open(args.db, key, **kwargs)


def _init_key(args: argparse.Namespace) -> int:
    create_key_file(args.path)
    print(f"wrote a new 256-bit database key to {args.path} (mode 0600)")
    return 0


def _init(args: argparse.Namespace) -> int:
    from pathlib import Path

    if Path(args.db).exists():
        raise DatabaseExistsError(f"{args.db} already exists; refusing to initialise over it")
    with _open(args, create=True, embedding_dim=args.embedding_dim) as store:
        print(
            f"created encrypted store {args.db} (schema {schema_version(store.db)}, "
            f"{store.embedding_dim}-dim embeddings)"
        )
    return 0


def _check(args: argparse.Namespace) -> int:
    with _open(args) as store:
        store.integrity_check()
        info = {
            "path": args.db,
            "cipher_version": store.db.pragma("cipher_version"),
            "schema_version": schema_version(store.db),
            "embedding_dim": store.embedding_dim,
            "journal_mode": store.db.pragma("journal_mode"),
            "phones": len(store.phones.list_phones(include_revoked=True)),
            "prompt_log": store.prompt_log.count(),
            "cache_entries": store.cache.count(),
            "documents": len(store.documents.list_documents()),
            "chunks": store.documents.chunk_count(),
            "outbox": store.outbox.counts(),
            "integrity": "ok",
        }
    print(json.dumps(info, sort_keys=True))
    return 0


def _purge(args: argparse.Namespace) -> int:
    policy = PromptLogPolicy(
        keep_text=True, retention_s=args.retention_days * DAY, text_retention_s=args.text_retention_days * DAY
    )
    with _open(args, prompt_log_policy=policy) as store:
        report = store.purge()
    print(json.dumps({k: getattr(report, k) for k in report.__slots__}, sort_keys=True))
    return 0


def _rekey(args: argparse.Namespace) -> int:
    new_key = load_key_file(args.new_key_file)
    with _open(args) as store:
        store.rekey(new_key)
    with Store.open(args.db, new_key) as store:  # prove the new key opens it
        store.integrity_check()
    print(
        f"re-encrypted {args.db} with the key in {args.new_key_file}; install it as the "
        "edgebox-db-key credential (or key file) before discarding the old key"
    )
    return 0


def register(subparsers: Any) -> None:
    store = subparsers.add_parser("store", help="the encrypted local store (SQLCipher)")
    sub = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")

    p = sub.add_parser("init-key", help="write a new random 256-bit key file (mode 0600)")
    p.add_argument("path")
    p.set_defaults(func=_init_key)

    p = sub.add_parser("init", help="create a new encrypted database (refuses to overwrite)")
    _add_db_args(p)
    p.add_argument("--embedding-dim", type=int, default=DEFAULT_EMBEDDING_DIM)
    p.set_defaults(func=_init)

    p = sub.add_parser("check", help="open with the key, run integrity checks, print counts as JSON")
    _add_db_args(p)
    p.set_defaults(func=_check)

    p = sub.add_parser("rekey", help="re-encrypt the database with a new key file (see init-key)")
    _add_db_args(p)
    p.add_argument("--new-key-file", required=True, help="the new key (0600), e.g. from `init-key`")
    p.set_defaults(func=_rekey)

    p = sub.add_parser("purge", help="apply retention: prompt log, cache, pairing secrets, outbox")
    _add_db_args(p)
    p.add_argument(
        "--retention-days", type=float, default=30.0, help="delete prompt log rows older than this"
    )
    p.add_argument(
        "--text-retention-days", type=float, default=7.0, help="blank prompt/answer text older than this"
    )
    p.set_defaults(func=_purge)
