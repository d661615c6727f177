"""Child process for test_rekey: open with one key file, announce READY, rekey to the other."""

from __future__ import annotations

import sys

from edgebox.log import configure_logging
from edgebox.store import Store
from edgebox.store.keys import load_key_file


def main() -> None:
    configure_logging("warning")  # log lines go to stderr, stdout is the report channel
    db, old_key_file, new_key_file = sys.argv[1:4]
    new_key = load_key_file(new_key_file)
    store = Store.open(db, load_key_file(old_key_file))
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    store.rekey(new_key)
    sys.stdout.write("DONE\n")
    sys.stdout.flush()
    store.close()


if __name__ == "__main__":
    main()
