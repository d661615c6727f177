"""Sans-I/O units of the box on a simulated clock: the uplink circuit breaker (opens after
consecutive failures, one half-open probe, closes on success, re-opens on a failed probe) and per-phone
standing (flood strikes and quota strikes throttle, then suspend; strikes age out of their window)."""

from __future__ import annotations

from edgebox.box.config import PipelineSection
from edgebox.box.forwarder import BreakerState, CircuitBreaker
from edgebox.box.standing import PhoneStanding, Standing


def test_breaker_opens_probes_once_and_closes() -> None:
    b = CircuitBreaker(failures=3, open_s=15.0)
    assert b.state(0.0) is BreakerState.closed and b.allow(0.0)
    b.failure(1.0)
    b.failure(2.0)
    assert b.state(2.0) is BreakerState.closed and b.allow(2.0)  # below the threshold
    b.failure(3.0)
    assert b.state(3.0) is BreakerState.open and not b.allow(3.0)
    assert b.retry_in(10.0) == 8.0
    assert b.state(17.9) is BreakerState.open
    assert b.state(18.0) is BreakerState.half_open
    assert b.allow(18.0)  # one probe ...
    assert not b.allow(18.1)  # ... and only one at a time
    b.failure(19.0)  # the probe failed: open again, from now
    assert b.state(19.0) is BreakerState.open and b.retry_in(19.0) == 15.0
    assert b.state(34.0) is BreakerState.half_open and b.allow(34.0)
    b.success()  # the probe went through
    assert b.state(34.0) is BreakerState.closed and b.failures == 0 and b.retry_in(34.0) == 0.0
    assert b.allow(34.0) and b.allow(34.0)  # closed: no probe limit


def test_a_success_between_failures_resets_the_count() -> None:
    b = CircuitBreaker(failures=3, open_s=15.0)
    b.failure(0.0)
    b.failure(1.0)
    b.success()
    b.failure(2.0)
    b.failure(3.0)
    assert b.state(3.0) is BreakerState.closed  # not three *consecutive* failures


CFG = PipelineSection(
    strike_window_s=60.0,
    throttle_after_strikes=2,
    suspend_after_strikes=3,
    throttle_s=10.0,
    suspend_s=900.0,
    flood_requests=3,
    flood_window_s=10.0,
)


def test_flood_strikes_throttle_then_suspend() -> None:
    s = PhoneStanding(CFG)
    t = 0.0
    for _ in range(3):  # up to flood_requests in the window: fine
        assert s.admit("p", t) is None
        t += 0.1
    first = s.admit("p", t)  # the 4th in 10 s: a flood, strike 1 (refused, standing unchanged)
    assert first is not None and first.standing is Standing.throttled
    assert s.status("p", t) == "enrolled"
    second = s.admit("p", t + 0.1)  # strike 2: throttled for throttle_s
    assert second is not None and second.standing is Standing.throttled
    assert second.retry_after_s == CFG.throttle_s and s.status("p", t + 0.2) == "throttled"
    refused = s.admit("p", t + 5)  # throttled: refused without counting a request
    assert refused is not None and abs(refused.retry_after_s - (CFG.throttle_s - 5 + 0.1)) < 1e-9
    t = t + 0.1 + CFG.throttle_s + 0.01  # the throttle is over
    answers = [s.admit("p", t + i * 0.01) for i in range(4)]  # flooding again: strike 3
    third = next(a for a in answers if a is not None)
    t += 0.03
    assert third.standing is Standing.suspended
    assert s.status("p", t) == "suspended" and third.retry_after_s == CFG.suspend_s
    assert s.status("other", t) == "enrolled"  # other phones are not affected
    assert s.status("p", t + CFG.suspend_s + 1) == "enrolled"  # a suspension ends


def test_quota_strikes_throttle_then_suspend_and_old_strikes_age_out() -> None:
    s = PhoneStanding(CFG)
    # Quota refusals are strikes (the pipeline calls strike() for each one).
    assert s.strike("p", 0.0) is None
    throttled = s.strike("p", 1.0)
    assert throttled is not None and throttled.standing is Standing.throttled
    assert s.admit("p", 2.0) is not None  # refused while throttled
    assert s.admit("p", 11.5) is None  # throttle over
    suspended = s.strike("p", 12.0)
    assert suspended is not None and suspended.standing is Standing.suspended
    assert s.status("p", 12.0) == "suspended"
    # Strikes further apart than the window never add up.
    q = PhoneStanding(CFG)
    assert q.strike("q", 0.0) is None
    assert q.strike("q", 61.0) is None and q.status("q", 61.0) == "enrolled"
