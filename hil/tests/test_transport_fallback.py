"""The TX fallback path: PropertiesChanged notifications (no AcquireNotify), with Ping flow control.

The box is started with --no-acquire-notify (module-scoped `box` fixture reads ECHO_BOX_ARGS). This is
the path older or patched BlueZ builds fall back to; long bursts here are what made dbus-fast 5.2 drop
its bus (shared notes item 6) without the flow control in BlePeripheral._notify_signal.
"""

from __future__ import annotations

import asyncio

from phones import blast, echo, echo_stream, open_link, stats

ECHO_BOX_ARGS = ["--no-acquire-notify"]


async def test_properties_changed_path_bulk_and_two_phones(hil, box, spacer):
    a = await open_link(hil, hil.phone_adapters[0])
    b = await open_link(hil, hil.phone_adapters[1])
    try:
        assert await echo(a, b"via signals") == b"Evia signals"
        count = -(-64 * 1024 // a.mtu)  # 64 KiB burst: far past the point where an unpaced sender broke
        got_a, _ = await asyncio.gather(blast(a, count, a.mtu), echo_stream(b, 8 * 1024, seed=0x3C))
        assert got_a == count * a.mtu
        info = await stats(b)
        assert info["notify_signal"] > count and info["notify_fd"] == 0
    finally:
        await a.close()
        await b.close()
