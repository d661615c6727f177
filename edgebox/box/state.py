"""The box's state directory: identity, database key (development) and the encrypted store.

<state>/identity.json   box id + long-term P-256 key (0600)
<state>/db.key          256-bit SQLCipher key for development (0600); on the Pi the key comes
                        from the systemd credential `edgebox-db-key` instead
<state>/box.db          the SQLCipher store (phones, pairing secrets, prompt log, cache, outbox)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgebox.box.identity import BoxIdentity
from edgebox.box.store_registry import StoreRegistry
from edgebox.store.keys import create_key_file, load_database_key
from edgebox.store.store import Store


@dataclass
class BoxState:
    root: Path
    identity: BoxIdentity
    store: Store

    @property
    def registry(self) -> StoreRegistry:
        return StoreRegistry(self.store)

    def close(self) -> None:
        self.store.close()


def init_state(root: Path) -> BoxState:
    """Create whatever is missing (identity, development key unless a credential exists, store)."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = BoxIdentity.load_or_create(root / "identity.json")
    key_file = root / "db.key"
    try:
        key = load_database_key(key_file=key_file if key_file.exists() else None)
    except Exception:
        key = create_key_file(key_file)
    db = root / "box.db"
    store = Store.open(db, key, create=not db.exists())
    return BoxState(root, identity, store)


def open_state(root: Path) -> BoxState:
    """Open an initialised state directory; a missing part is a typed error, never a new empty one."""
    identity = BoxIdentity.load(root / "identity.json")
    key_file = root / "db.key"
    key = load_database_key(key_file=key_file if key_file.exists() else None)
    return BoxState(root, identity, Store.open(root / "box.db", key))
