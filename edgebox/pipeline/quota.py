"""Sliding-window token quotas: reserve an estimate before the call, reconcile with real usage after.

Theory of operation: each quota key (a device, a phone) has a log of charges `(time, id, tokens)`.
The quota is "at most `limit.tokens` tokens charged within any `limit.window_s` seconds" — a true
sliding window, not a fixed one that resets. A request first *reserves* an estimate meant to be an
upper bound of what it can cost (1 token per prompt character + the completion cap); admission and the
charge are one atomic step, so concurrent requests can never jointly pass the check. After the call the
charge is *reconciled* to the real usage reported by the upstream (usually lower). A reservation whose
window already ran out when reconciling is charged afresh at reconcile time, so long streams still
count. Because admission is atomic, the charged total can exceed the limit only by what in-flight requests
cost beyond their estimates. The guarantee (docs/gateway.md, tests/gateway/test_replicas.py): with an
estimate that is a true upper bound (the gateway's is) the limit is never exceeded; with an upstream
that bills more than the bound, the excess within a window is at most `max_inflight` requests' overrun,
because at most `max_inflight` reservations of a key are unreconciled at any time.

Two backends with the same semantics:
- `MemoryQuota`: one process (the gateway's single-replica default, the box's per-phone quotas).
- `RedisQuota`: any number of replicas; one Lua script does expire + sum + admit/reject + charge
  atomically inside Redis, using Redis's own clock so replicas agree on time.

A rejection raises `QuotaExceeded` with `retry_after` = seconds until enough charges expire for this
estimate to fit. An estimate larger than the whole limit can never fit: `QuotaRequestTooLarge`.
Transport-neutral (no HTTP here).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from edgebox.errors import EdgeboxError


class QuotaExceeded(EdgeboxError):
    code = "quota_exceeded"

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"token quota exhausted; retry after {math.ceil(retry_after)} s")
        self.retry_after = retry_after


class QuotaInFlight(EdgeboxError):
    """Too many of this key's requests are in flight (reserved, not yet reconciled)."""

    code = "quota_exceeded"

    def __init__(self, retry_after: float = 1.0) -> None:
        super().__init__("too many requests of this device are in flight; retry shortly")
        self.retry_after = retry_after


class QuotaRequestTooLarge(EdgeboxError):
    code = "request_exceeds_quota"

    def __init__(self) -> None:
        super().__init__("the request's token estimate is larger than the whole quota")


@dataclass(frozen=True, slots=True)
class QuotaLimit:
    tokens: int
    window_s: float
    max_inflight: int | None = None  # reservations not yet reconciled, per key (None = unbounded)
    inflight_ttl_s: float = 600.0  # an in-flight slot whose reconcile never came (a replica died)

    def __post_init__(self) -> None:
        if self.tokens < 1 or self.window_s <= 0:
            raise ValueError("quota tokens must be >= 1 and window_s > 0")
        if self.max_inflight is not None and self.max_inflight < 1:
            raise ValueError("max_inflight must be >= 1")


@dataclass(frozen=True, slots=True)
class Reservation:
    key: str
    rid: str
    estimate: int


class QuotaBackend(Protocol):
    async def reserve(self, key: str, estimate: int, limit: QuotaLimit) -> Reservation: ...

    async def reconcile(self, reservation: Reservation, actual: int, limit: QuotaLimit) -> None: ...

    async def used(self, key: str, limit: QuotaLimit) -> int: ...

    async def close(self) -> None: ...


def estimate_tokens(total_chars: int, n_messages: int, max_completion: int) -> int:
    """A conservative estimate: 1 token per character (tokenizers average 3-4 characters per token on
    ordinary text), per-message framing, plus the completion cap the upstream is held to. Over-reserving
    only matters while a request is in flight: reconciling returns the difference."""
    return total_chars + 1 + 4 * n_messages + max_completion


def _new_rid() -> str:
    return os.urandom(8).hex()


class _Charge:
    __slots__ = ("at", "rid", "tokens")

    def __init__(self, at: float, rid: str, tokens: int) -> None:
        self.at = at
        self.rid = rid
        self.tokens = tokens


class _Log:
    __slots__ = ("by_rid", "charges", "total")

    def __init__(self) -> None:
        self.charges: deque[_Charge] = deque()
        self.by_rid: dict[str, _Charge] = {}
        self.total = 0

    def expire(self, cutoff: float) -> None:
        charges = self.charges
        while charges and charges[0].at <= cutoff:
            c = charges.popleft()
            self.total -= c.tokens
            del self.by_rid[c.rid]

    def add(self, at: float, rid: str, tokens: int) -> None:
        c = _Charge(at, rid, tokens)
        self.charges.append(c)
        self.by_rid[rid] = c
        self.total += tokens


class MemoryQuota:
    """Single-process backend. `clock` is injectable for tests (defaults to time.monotonic)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._logs: dict[str, _Log] = {}
        self._inflight: dict[str, dict[str, float]] = {}  # key -> rid -> expiry

    def _log(self, key: str, limit: QuotaLimit) -> tuple[_Log, float]:
        now = self._clock()
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = _Log()
        log.expire(now - limit.window_s)
        return log, now

    def reserve_now(self, key: str, estimate: int, limit: QuotaLimit) -> Reservation:
        if estimate > limit.tokens:
            raise QuotaRequestTooLarge()
        log, now = self._log(key, limit)
        flying = self._inflight.setdefault(key, {})
        if limit.max_inflight is not None:
            for rid in [r for r, until in flying.items() if until <= now]:
                del flying[rid]
            if len(flying) >= limit.max_inflight:
                raise QuotaInFlight()
        if log.total + estimate > limit.tokens:
            need = log.total + estimate - limit.tokens
            freed = 0
            retry = limit.window_s
            for c in log.charges:
                freed += c.tokens
                if freed >= need:
                    retry = c.at + limit.window_s - now
                    break
            raise QuotaExceeded(max(retry, 0.001))
        rid = _new_rid()
        log.add(now, rid, estimate)
        if limit.max_inflight is not None:
            flying[rid] = now + limit.inflight_ttl_s
        return Reservation(key, rid, estimate)

    def reconcile_now(self, reservation: Reservation, actual: int, limit: QuotaLimit) -> None:
        actual = max(0, actual)
        flying = self._inflight.get(reservation.key)
        if flying is not None:
            flying.pop(reservation.rid, None)
            if not flying:
                del self._inflight[reservation.key]
        log, now = self._log(reservation.key, limit)
        c = log.by_rid.get(reservation.rid)
        if c is not None:
            log.total += actual - c.tokens
            c.tokens = actual
        elif actual:
            log.add(now, reservation.rid + ":late", actual)
        if not log.charges:
            del self._logs[reservation.key]

    async def reserve(self, key: str, estimate: int, limit: QuotaLimit) -> Reservation:
        return self.reserve_now(key, estimate, limit)

    async def reconcile(self, reservation: Reservation, actual: int, limit: QuotaLimit) -> None:
        self.reconcile_now(reservation, actual, limit)

    async def used(self, key: str, limit: QuotaLimit) -> int:
        log, _ = self._log(key, limit)
        return log.total

    async def close(self) -> None:
        self._logs.clear()
        self._inflight.clear()


# KEYS[1] = zset (member rid, score ms), KEYS[2] = hash (rid -> tokens), KEYS[3] = zset of in-flight
# rids (score = expiry ms). ARGV: estimate, limit, window_ms, rid, mode ("reserve" | "reconcile" |
# "used"), max_inflight (0 = unbounded), inflight_ttl_ms, now_ms ("" = Redis's clock). All keys share
# the key's hash tag.
_LUA = r"""
local now
if ARGV[8] ~= nil and ARGV[8] ~= '' then
  now = tonumber(ARGV[8])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local est = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local rid = ARGV[4]
local mode = ARGV[5]
local cutoff = now - window
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
  for i = 1, #expired, 500 do
    redis.call('HDEL', KEYS[2], unpack(expired, i, math.min(i + 499, #expired)))
  end
end
local used = 0
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do used = used + tonumber(v) end
if mode == 'used' then return {1, 0, used} end
local ttl = window + 60000
local max_inflight = tonumber(ARGV[6])
if mode == 'reconcile' then
  redis.call('ZREM', KEYS[3], rid)
  if redis.call('HEXISTS', KEYS[2], rid) == 1 then
    redis.call('HSET', KEYS[2], rid, est)
  elseif est > 0 then
    redis.call('ZADD', KEYS[1], now, rid .. ':late')
    redis.call('HSET', KEYS[2], rid .. ':late', est)
  end
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  return {1, 0, used}
end
if max_inflight > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= max_inflight then return {2, 1000, used} end
end
if used + est > limit then
  local need = used + est - limit
  local freed = 0
  local retry = window
  local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    freed = freed + tonumber(redis.call('HGET', KEYS[2], entries[i]) or '0')
    if freed >= need then
      retry = tonumber(entries[i + 1]) + window - now
      break
    end
  end
  return {0, retry, used}
end
redis.call('ZADD', KEYS[1], now, rid)
redis.call('HSET', KEYS[2], rid, est)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
if max_inflight > 0 then
  local inflight_ttl = tonumber(ARGV[7])
  redis.call('ZADD', KEYS[3], now + inflight_ttl, rid)
  redis.call('PEXPIRE', KEYS[3], inflight_ttl + 1000)
end
return {1, 0, used + est}
"""


class RedisQuota:
    """Backend shared by replicas. `client` is a `redis.asyncio.Redis`."""

    def __init__(
        self, client: Any, prefix: str = "edgebox:quota", *, clock: Callable[[], float] | None = None
    ) -> None:
        """`clock` (seconds) replaces Redis's own clock - for tests only; replicas must share a clock."""
        self._clock = clock
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_LUA)

    def _keys(self, key: str) -> list[str]:
        base = f"{self._prefix}:{{{key}}}"
        return [base + ":z", base + ":h", base + ":f"]

    async def _run(self, key: str, est: int, limit: QuotaLimit, rid: str, mode: str) -> list[int]:
        window_ms = max(1, round(limit.window_s * 1000))
        inflight = limit.max_inflight or 0
        ttl_ms = max(1, round(limit.inflight_ttl_s * 1000))
        result = await self._script(
            keys=self._keys(key),
            args=[est, limit.tokens, window_ms, rid, mode, inflight, ttl_ms, self._now_ms()],
        )
        return [int(x) for x in result]

    def _now_ms(self) -> str:
        return "" if self._clock is None else str(round(self._clock() * 1000))

    async def reserve(self, key: str, estimate: int, limit: QuotaLimit) -> Reservation:
        if estimate > limit.tokens:
            raise QuotaRequestTooLarge()
        rid = _new_rid()
        ok, retry_ms, _used = await self._run(key, estimate, limit, rid, "reserve")
        if ok == 2:
            raise QuotaInFlight(retry_ms / 1000)
        if not ok:
            raise QuotaExceeded(max(retry_ms, 1) / 1000)
        return Reservation(key, rid, estimate)

    async def reconcile(self, reservation: Reservation, actual: int, limit: QuotaLimit) -> None:
        await self._run(reservation.key, max(0, actual), limit, reservation.rid, "reconcile")

    async def used(self, key: str, limit: QuotaLimit) -> int:
        return (await self._run(key, 0, limit, "", "used"))[2]

    async def close(self) -> None:
        await asyncio.shield(self._client.aclose())
