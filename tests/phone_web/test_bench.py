"""The web phone bench runs end to end (tiny sizes; figures are printed by `make bench`, never asserted)."""

from __future__ import annotations

import argparse

from edgebox.phone_web import bench


async def test_bench_runs() -> None:
    args = argparse.Namespace(handshakes=2, records=20, rounds=1, payload=244)
    result = await bench._run(args)
    assert set(result) >= {
        "web_handshake_ms",
        "python_handshake_ms",
        "web_records_per_s",
        "record_vs_raw_webcrypto",
    }
    assert result["web_records_per_s"] > 0 and result["web_handshake_ms"] > 0
