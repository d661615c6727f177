"""Per-device anomaly watch with a graduated response: throttle a phone, suspend a phone, revoke a box.

Theory of operation: the box tells the gateway which paired phone sent each request
(`X-Edgebox-Phone`), so misbehaviour is attributed to the smallest unit that can be cut off:
* **phone level** — validation failures and blocked injections from one phone, counted together in a
  sliding window: above `phone_throttle_after` the phone is throttled (its requests get 429
  `phone_throttled` for `phone_throttle_s`), above `phone_suspend_after` it is suspended (403
  `phone_suspended` for `phone_suspend_s`; the box drops the phone when it sees that code).
* **box level** — what only a compromised box produces: failures and blocked injections on requests
  the box sends without a phone, a request-rate spike over all of the box's traffic, many repeats of
  one prompt, or more than `max_suspended_phones` phones suspended within `phone_suspend_s` (a box
  inventing phone ids to dodge the phone level). These revoke the box's certificate.
Counters and flags live in the shared `DeviceState` (Redis for replicas), so N replicas see all of a
device's behaviour and exactly one replica — the one whose `set_flag` wins — reports each verdict.
`reset(box)` after `edgebox pki reinstate` starts the watch again from zero. Prompts are counted by a
keyed BLAKE2b digest whose key is shared by the replicas (stored once in the state backend): no prompt
text is stored and the digests cannot be matched against a dictionary.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from enum import StrEnum

from edgebox.gateway.config import AnomalyConfig
from edgebox.gateway.state import DeviceState, MemoryDeviceState


class Level(StrEnum):
    throttle_phone = "throttle_phone"
    suspend_phone = "suspend_phone"
    revoke_box = "revoke_box"


@dataclass(frozen=True, slots=True)
class AnomalyVerdict:
    # validation_failure_rate | blocked_injection_rate | request_rate_spike | repeated_prompt
    # | phone_misbehaviour | suspended_phones
    reason: str
    observed: int
    threshold: int
    window_s: float
    level: Level = Level.revoke_box
    phone: str | None = None

    def explain(self) -> str:
        who = f"phone {self.phone}: " if self.phone else ""
        return (
            f"{who}{self.reason}: {self.observed} events in {self.window_s:g} s (threshold {self.threshold})"
        )


@dataclass(frozen=True, slots=True)
class PhoneStanding:
    suspended: bool = False
    throttled_for_s: float | None = None


OK = PhoneStanding()


class AnomalyWatch:
    def __init__(self, cfg: AnomalyConfig, state: DeviceState | None = None) -> None:
        self.cfg = cfg
        self.state: DeviceState = state if state is not None else MemoryDeviceState()
        self._hash_key = os.urandom(32)

    async def start(self) -> None:
        """Take the digest key the replicas share."""
        self._hash_key = await self.state.shared_secret("anomaly-digest")

    def prompt_digest(self, data: bytes) -> bytes:
        return hashlib.blake2b(data, key=self._hash_key, digest_size=16).digest()

    async def _trip(self, box: str, verdict: AnomalyVerdict) -> AnomalyVerdict | None:
        if await self.state.set_flag(box, "tripped", self.cfg.window_s):
            return verdict
        return None  # another request (maybe on another replica) already tripped the box

    async def standing(self, box: str, phone: str | None) -> PhoneStanding:
        if not self.cfg.enabled or phone is None:
            return OK
        susp, thr = await self.state.flags(box, [f"ph:{phone}:susp", f"ph:{phone}:thr"])
        if susp is not None:
            return PhoneStanding(suspended=True)
        if thr is not None:
            return PhoneStanding(throttled_for_s=thr)
        return OK

    async def observe_request(self, box: str, prompt_digest: bytes | None) -> AnomalyVerdict | None:
        if not self.cfg.enabled:
            return None
        c = self.cfg
        windows = [("req", c.rate_window_s)]
        if prompt_digest is not None:
            windows.append(("p:" + prompt_digest.hex(), c.window_s))
        counts = await self.state.count(box, windows)
        if counts[0] > c.max_requests_per_rate_window:
            return await self._trip(
                box,
                AnomalyVerdict(
                    "request_rate_spike", counts[0], c.max_requests_per_rate_window, c.rate_window_s
                ),
            )
        if len(counts) > 1 and counts[1] > c.max_identical_prompts:
            return await self._trip(
                box, AnomalyVerdict("repeated_prompt", counts[1], c.max_identical_prompts, c.window_s)
            )
        return None

    async def observe_validation_failure(self, box: str, phone: str | None = None) -> AnomalyVerdict | None:
        return await self._observe_bad(
            box, phone, "validation_failure_rate", self.cfg.max_validation_failures
        )

    async def observe_blocked_injection(self, box: str, phone: str | None = None) -> AnomalyVerdict | None:
        return await self._observe_bad(box, phone, "blocked_injection_rate", self.cfg.max_blocked_injections)

    async def _observe_bad(
        self, box: str, phone: str | None, reason: str, box_threshold: int
    ) -> AnomalyVerdict | None:
        if not self.cfg.enabled:
            return None
        c = self.cfg
        if phone is None:
            (n,) = await self.state.count(box, [("box:" + reason, c.window_s)])
            if n > box_threshold:
                return await self._trip(box, AnomalyVerdict(reason, n, box_threshold, c.window_s))
            return None
        (n,) = await self.state.count(box, [(f"ph:{phone}:bad", c.window_s)])
        if n > c.phone_suspend_after:
            if not await self.state.set_flag(box, f"ph:{phone}:susp", c.phone_suspend_s):
                return None
            (k,) = await self.state.count(box, [("suspended", c.phone_suspend_s)])
            if k > c.max_suspended_phones:
                revoke = AnomalyVerdict("suspended_phones", k, c.max_suspended_phones, c.phone_suspend_s)
                tripped = await self._trip(box, revoke)
                if tripped is not None:
                    return tripped
            return AnomalyVerdict(
                "phone_misbehaviour", n, c.phone_suspend_after, c.window_s, Level.suspend_phone, phone
            )
        if n > c.phone_throttle_after and await self.state.set_flag(
            box, f"ph:{phone}:thr", c.phone_throttle_s
        ):
            return AnomalyVerdict(
                "phone_misbehaviour", n, c.phone_throttle_after, c.window_s, Level.throttle_phone, phone
            )
        return None

    async def reset(self, box: str) -> None:
        """Start watching a box again from zero (after an operator reinstates it)."""
        await self.state.reset(box)
