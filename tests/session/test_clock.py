"""The sans-I/O core's clock (next_deadline / handle_timer), driven by a simulated clock over hours,
and by the real transport driver.

v1 had no timer: rekey happened only when sending, so a session idle for more than 900 s could
never send again (its next message, and the REKEY record itself, were refused as rekey_overdue).
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from edgebox.session.config import SessionConfig
from edgebox.session.connection import BoxConnection, MessageReceived, PhoneConnection
from edgebox.session.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from edgebox.session.states import State
from tests.session.box_harness import Box
from tests.session.util import CAPS, Pair, deliver, establish


def _run_clock(phone: PhoneConnection, box: BoxConnection, start: float, until: float) -> tuple[float, int]:
    """Advance a simulated clock from deadline to deadline, delivering whatever the timers send."""
    now, fired = start, 0
    while True:
        nxt = min(phone.next_deadline(), box.next_deadline())
        assert not math.isinf(nxt)
        if nxt > until:
            return now, fired
        now = nxt
        phone.handle_timer(now)
        box.handle_timer(now)
        for event in deliver(phone, box, now) + deliver(box, phone, now):
            assert not isinstance(event, MessageReceived)
        fired += 1


def test_a_session_idle_for_hours_keeps_working() -> None:
    p = Pair()
    phone, box = p.session()
    establish(phone, box, now=100.0)
    now, fired = _run_clock(phone, box, 100.0, 100.0 + 6 * 3600)  # six idle hours
    assert fired > 100  # rekeys every 600 s and keep-alives every 120 s, both ways
    assert phone._records is not None and box._records is not None
    assert phone._records.rekeys_sent >= 35 and box._records.rekeys_received >= 35
    later = now + 30.0
    phone.send_message(b"after six hours", later)
    assert deliver(phone, box, later) == [MessageReceived(b"after six hours")]
    box.send_message(b"still here", later)
    assert deliver(box, phone, later) == [MessageReceived(b"still here")]


def test_without_the_timer_an_idle_session_fails_closed_as_v1_did() -> None:
    """The hard limit is still enforced: a driver that never calls handle_timer loses the session
    (what made v1 unusable after 900 s idle); the timer is what keeps it alive."""
    p = Pair()
    phone, box = p.session()
    establish(phone, box)
    with pytest.raises(LocalProtocolError) as e:  # the REKEY itself would overstay the old key
        phone.send_message(b"late", 901.0)
    assert e.value.wire_code is ErrorCode.rekey_overdue and phone.state is State.failed


def test_one_handshake_deadline_lives_in_the_core() -> None:
    cfg = SessionConfig(handshake_timeout_s=30.0)
    box = BoxConnection(Pair().box_key, capabilities=CAPS, config=cfg, now=50.0)
    assert box.next_deadline() == 80.0
    box.handle_timer(79.9)
    assert box.state is State.await_hello
    with pytest.raises(RemoteProtocolError) as e:
        box.handle_timer(80.0)
    assert e.value.wire_code is ErrorCode.timeout and box.state is State.failed
    assert box.data_to_send() == [bytes((0x7F, 0, ErrorCode.timeout))]
    assert math.isinf(box.next_deadline())


async def test_the_transport_driver_rekeys_an_idle_live_session(tmp_path: Path) -> None:
    """End to end over loopback with a short key lifetime: idle for several key lifetimes, both
    drivers rekey on time, and the session answers afterwards."""
    cfg = SessionConfig(rekey_after_s=0.3, hard_s=0.6, keepalive_s=0.2)
    box = Box(tmp_path, config=cfg)
    try:
        session = await box.pair(config=cfg)
        await asyncio.sleep(2.0)  # idle: > 3 hard key lifetimes
        assert (await session.ask("after idling")).text == "after idling"
        records = session.conn._records
        assert records is not None and records.rekeys_sent >= 3 and records.rekeys_received >= 3
        await session.close()
        assert box.server.stats.protocol_errors == 0
    finally:
        await box.stop()
