"""Per-device anomaly watch: decides when a box looks compromised and must be revoked.

Theory of operation: for each box, sliding windows of event timestamps — validation failures, blocked
injections, all requests (a short "rate" window catches spikes), and per-prompt-hash counts for
repeated identical prompts. Prompts are identified by a keyed BLAKE2b digest (key random per
process), so no prompt text is stored and the digests cannot be matched against a dictionary. Each
`observe_*` call returns an `AnomalyVerdict` the first time a threshold is crossed (the gateway then
revokes the box in the shared store, closes its connections, alerts, and writes the explanation to the
audit log), or None. State is bounded: at most `MAX_DEVICES` boxes and `MAX_HASHES` prompt digests per
box are tracked (least recently seen dropped first). Counting is per replica; revocation is shared.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from edgebox.gateway.config import AnomalyConfig

MAX_DEVICES = 10_000
MAX_HASHES = 256


@dataclass(frozen=True, slots=True)
class AnomalyVerdict:
    reason: str  # validation_failure_rate | blocked_injection_rate | request_rate_spike | repeated_prompt
    observed: int
    threshold: int
    window_s: float

    def explain(self) -> str:
        return f"{self.reason}: {self.observed} events in {self.window_s:g} s (threshold {self.threshold})"


class _Device:
    __slots__ = ("blocked", "failures", "prompts", "requests", "tripped")

    def __init__(self) -> None:
        self.failures: deque[float] = deque()
        self.blocked: deque[float] = deque()
        self.requests: deque[float] = deque()
        self.prompts: OrderedDict[bytes, deque[float]] = OrderedDict()
        self.tripped = False


def _count(events: deque[float], now: float, window: float) -> int:
    cutoff = now - window
    while events and events[0] <= cutoff:
        events.popleft()
    events.append(now)
    return len(events)


class AnomalyWatch:
    def __init__(self, cfg: AnomalyConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self._clock = clock
        self._devices: OrderedDict[str, _Device] = OrderedDict()
        self._hash_key = os.urandom(32)

    def _device(self, box_id: str) -> _Device | None:
        if not self.cfg.enabled:
            return None
        d = self._devices.get(box_id)
        if d is None:
            d = self._devices[box_id] = _Device()
            if len(self._devices) > MAX_DEVICES:
                self._devices.popitem(last=False)
        else:
            self._devices.move_to_end(box_id)
        return None if d.tripped else d

    def _trip(self, d: _Device, reason: str, observed: int, threshold: int, window: float) -> AnomalyVerdict:
        d.tripped = True
        return AnomalyVerdict(reason, observed, threshold, window)

    def prompt_digest(self, data: bytes) -> bytes:
        return hashlib.blake2b(data, key=self._hash_key, digest_size=16).digest()

    def observe_request(self, box_id: str, prompt_digest: bytes | None) -> AnomalyVerdict | None:
        d = self._device(box_id)
        if d is None:
            return None
        c, now = self.cfg, self._clock()
        n = _count(d.requests, now, c.rate_window_s)
        if n > c.max_requests_per_rate_window:
            return self._trip(d, "request_rate_spike", n, c.max_requests_per_rate_window, c.rate_window_s)
        if prompt_digest is not None:
            events = d.prompts.get(prompt_digest)
            if events is None:
                events = d.prompts[prompt_digest] = deque()
                if len(d.prompts) > MAX_HASHES:
                    d.prompts.popitem(last=False)
            else:
                d.prompts.move_to_end(prompt_digest)
            n = _count(events, now, c.window_s)
            if n > c.max_identical_prompts:
                return self._trip(d, "repeated_prompt", n, c.max_identical_prompts, c.window_s)
        return None

    def observe_validation_failure(self, box_id: str) -> AnomalyVerdict | None:
        d = self._device(box_id)
        if d is None:
            return None
        n = _count(d.failures, self._clock(), self.cfg.window_s)
        if n > self.cfg.max_validation_failures:
            return self._trip(
                d, "validation_failure_rate", n, self.cfg.max_validation_failures, self.cfg.window_s
            )
        return None

    def observe_blocked_injection(self, box_id: str) -> AnomalyVerdict | None:
        d = self._device(box_id)
        if d is None:
            return None
        n = _count(d.blocked, self._clock(), self.cfg.window_s)
        if n > self.cfg.max_blocked_injections:
            return self._trip(
                d, "blocked_injection_rate", n, self.cfg.max_blocked_injections, self.cfg.window_s
            )
        return None

    def forget(self, box_id: str) -> None:
        """Drop a box's state (after an operator reinstates it)."""
        self._devices.pop(box_id, None)
