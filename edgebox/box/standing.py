"""Per-phone standing on the box: throttle, then suspend, a phone that misbehaves.

Theory of operation: the gateway's anomaly watch revokes the whole box's certificate when one device
misbehaves too much (e.g. six blocked prompts in 60 s), which would take a branch offline because of
one phone. So the box judges each phone first, with stricter thresholds, and stops the bad traffic
before it reaches the gateway. A *strike* is a blocked prompt, a quota refusal or a flood (more than
`flood_requests` prompts in `flood_window_s`). With `throttle_after_strikes` strikes inside
`strike_window_s` the phone is throttled (every prompt refused with `busy` + retry-after for
`throttle_s`); with `suspend_after_strikes` it is suspended for `suspend_s`. A gateway refusal
`phone_suspended` (contract 6) suspends the phone on the box at once. Sans-I/O: time is passed in
(monotonic seconds); state is in memory (a restart forgives, the gateway still remembers).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from edgebox.box.config import PipelineSection


class Standing(StrEnum):
    enrolled = "enrolled"  # in good standing
    throttled = "throttled"
    suspended = "suspended"


@dataclass(frozen=True, slots=True)
class Refusal:
    standing: Standing
    retry_after_s: float


@dataclass
class _Phone:
    strikes: deque[float] = field(default_factory=deque)
    requests: deque[float] = field(default_factory=deque)
    throttled_until: float = 0.0
    suspended_until: float = 0.0


class PhoneStanding:
    def __init__(self, cfg: PipelineSection) -> None:
        self.cfg = cfg
        self._phones: dict[str, _Phone] = {}

    def _phone(self, phone_id: str) -> _Phone:
        p = self._phones.get(phone_id)
        if p is None:
            p = self._phones[phone_id] = _Phone()
        return p

    def status(self, phone_id: str, now: float) -> str:
        p = self._phones.get(phone_id)
        if p is None:
            return Standing.enrolled.value
        if p.suspended_until > now:
            return Standing.suspended.value
        if p.throttled_until > now:
            return Standing.throttled.value
        return Standing.enrolled.value

    def admit(self, phone_id: str, now: float) -> Refusal | None:
        """Called for every prompt: None to go on, else why not (counts floods as strikes)."""
        p = self._phone(phone_id)
        if p.suspended_until > now:
            return Refusal(Standing.suspended, p.suspended_until - now)
        if p.throttled_until > now:
            return Refusal(Standing.throttled, p.throttled_until - now)
        cutoff = now - self.cfg.flood_window_s
        while p.requests and p.requests[0] <= cutoff:
            p.requests.popleft()
        p.requests.append(now)
        if len(p.requests) > self.cfg.flood_requests:
            after = self.strike(phone_id, now)
            return after or Refusal(Standing.throttled, self.cfg.flood_window_s)
        return None

    def strike(self, phone_id: str, now: float) -> Refusal | None:
        """Record one strike; returns the new refusal when it changed the phone's standing."""
        p = self._phone(phone_id)
        cutoff = now - self.cfg.strike_window_s
        while p.strikes and p.strikes[0] <= cutoff:
            p.strikes.popleft()
        p.strikes.append(now)
        n = len(p.strikes)
        if n >= self.cfg.suspend_after_strikes:
            return self.suspend(phone_id, now)
        if n >= self.cfg.throttle_after_strikes:
            p.throttled_until = max(p.throttled_until, now + self.cfg.throttle_s)
            return Refusal(Standing.throttled, self.cfg.throttle_s)
        return None

    def suspend(self, phone_id: str, now: float, duration: float | None = None) -> Refusal:
        p = self._phone(phone_id)
        p.suspended_until = max(p.suspended_until, now + (duration or self.cfg.suspend_s))
        p.strikes.clear()
        return Refusal(Standing.suspended, p.suspended_until - now)

    def forgive(self, phone_id: str) -> None:
        self._phones.pop(phone_id, None)
