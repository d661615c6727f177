"""`python -m edgebox.provision ...`: the same commands as `edgebox provision ...` without importing
every other CLI module (first boot on a Pi, and the qemu boot test, start faster)."""

from __future__ import annotations

import sys

from edgebox.provision.cli import main

sys.exit(main())
