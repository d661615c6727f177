"""The box's encrypted local store (SQLCipher 4). See docs/store.md.

`Store.open(path, load_database_key(...), create=...)` gives the repositories: `phones`,
`pairing`, `prompt_log`, `cache`, `documents`, `outbox`.
"""

from edgebox.store.keys import DatabaseKey, create_key_file, load_database_key
from edgebox.store.store import PurgeReport, Store

__all__ = ["DatabaseKey", "PurgeReport", "Store", "create_key_file", "load_database_key"]
