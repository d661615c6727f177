"""Device state every gateway replica shares: sliding-window event counters, flags with an expiry,
and idempotency records — one in-process backend and one Redis backend with the same semantics.

Theory of operation: all state of one box lives under one Redis hash tag, `edgebox:dev:{<box id>}:…`,
so every multi-key operation for a box runs on one node of a Redis Cluster. Nothing a replica keeps in
memory is needed by another replica.

* `count(box, [(name, window_s), ...])` records one event in each named sliding window and returns the
  counts in the windows (one round trip: a Lua script that trims, adds and counts each sorted set,
  timed by Redis's own clock so replicas agree on time).
* `set_flag(box, name, ttl_s)` sets a flag only if absent and says whether *this* call set it: the one
  replica that trips a threshold is the one that alerts. `flags(box, names)` returns the remaining
  seconds of each flag (None when unset).
* `reset(box)` (after `edgebox pki reinstate`) bumps the box's generation: every key name carries the
  generation, so all counters and flags of the box start again at once, on every replica; old keys
  expire on their own.
* Idempotency: `idem_begin(box, key, ttl_s)` atomically claims a key (`None` = this request forwards),
  or returns `PENDING` (another request with the key is in flight) or the stored outcome bytes.
  `idem_finish` stores the outcome, `idem_release` frees a claim whose request was never forwarded.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

PENDING: Final = b"\x00pending"


class DeviceState(Protocol):
    async def count(self, box: str, windows: Sequence[tuple[str, float]]) -> list[int]: ...
    async def set_flag(self, box: str, name: str, ttl_s: float) -> bool: ...
    async def flags(self, box: str, names: Sequence[str]) -> list[float | None]: ...
    async def reset(self, box: str) -> None: ...
    async def idem_begin(self, box: str, key: str, ttl_s: float) -> bytes | None: ...
    async def idem_finish(self, box: str, key: str, outcome: bytes, ttl_s: float) -> None: ...
    async def idem_release(self, box: str, key: str) -> None: ...
    async def shared_secret(self, name: str) -> bytes: ...
    async def close(self) -> None: ...


class MemoryDeviceState:
    """One process (a single replica). `clock` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[tuple[str, str], deque[float]] = {}
        self._flags: dict[tuple[str, str], float] = {}
        self._idem: dict[tuple[str, str], tuple[float, bytes]] = {}
        self._secrets: dict[str, bytes] = {}

    async def count(self, box: str, windows: Sequence[tuple[str, float]]) -> list[int]:
        now = self._clock()
        out = []
        for name, window in windows:
            events = self._windows.setdefault((box, name), deque())
            while events and events[0] <= now - window:
                events.popleft()
            events.append(now)
            out.append(len(events))
        if len(self._windows) > 100_000:  # bounded: drop empty-ish windows
            self._windows = {k: v for k, v in self._windows.items() if v and v[-1] > now - 3600}
        return out

    async def set_flag(self, box: str, name: str, ttl_s: float) -> bool:
        now = self._clock()
        until = self._flags.get((box, name))
        if until is not None and until > now:
            return False
        self._flags[(box, name)] = now + ttl_s
        return True

    async def flags(self, box: str, names: Sequence[str]) -> list[float | None]:
        now = self._clock()
        out: list[float | None] = []
        for name in names:
            until = self._flags.get((box, name))
            out.append(until - now if until is not None and until > now else None)
        return out

    async def reset(self, box: str) -> None:
        for k in [k for k in self._windows if k[0] == box]:
            del self._windows[k]
        for k in [k for k in self._flags if k[0] == box]:
            del self._flags[k]

    async def idem_begin(self, box: str, key: str, ttl_s: float) -> bytes | None:
        now = self._clock()
        hit = self._idem.get((box, key))
        if hit is not None and hit[0] > now:
            return hit[1]
        self._idem[(box, key)] = (now + ttl_s, PENDING)
        return None

    async def idem_finish(self, box: str, key: str, outcome: bytes, ttl_s: float) -> None:
        self._idem[(box, key)] = (self._clock() + ttl_s, outcome)

    async def idem_release(self, box: str, key: str) -> None:
        self._idem.pop((box, key), None)

    async def shared_secret(self, name: str) -> bytes:
        return self._secrets.setdefault(name, os.urandom(32))

    async def close(self) -> None:
        return None


# KEYS[1] = generation key of the box. ARGV[1] = key prefix of the box, then (name, window_ms) pairs;
# ARGV[2] = a unique member for this event. All keys share the box's hash tag (same cluster slot).
_COUNT = r"""
local gen = redis.call('GET', KEYS[1]) or '0'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 3, #ARGV, 2 do
  local k = ARGV[1] .. ':g' .. gen .. ':' .. ARGV[i]
  local window = tonumber(ARGV[i + 1])
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now - window)
  redis.call('ZADD', k, now, ARGV[2])
  redis.call('PEXPIRE', k, window + 1000)
  out[#out + 1] = redis.call('ZCARD', k)
end
return out
"""
# ARGV[1] = prefix, ARGV[2] = mode ("set" | "get"), ARGV[3] = ttl_ms (set), ARGV[4..] = names
_FLAGS = r"""
local gen = redis.call('GET', KEYS[1]) or '0'
local base = ARGV[1] .. ':g' .. gen .. ':flag:'
if ARGV[2] == 'set' then
  local ok = redis.call('SET', base .. ARGV[4], '1', 'NX', 'PX', tonumber(ARGV[3]))
  if ok then return {1} end
  return {0}
end
local out = {}
for i = 4, #ARGV do out[#out + 1] = redis.call('PTTL', base .. ARGV[i]) end
return out
"""


class RedisDeviceState:
    """Shared by replicas. `client` is a `redis.asyncio.Redis` or `RedisCluster`."""

    def __init__(self, client: Any, prefix: str = "edgebox:dev") -> None:
        self._r = client
        self._prefix = prefix
        self._count = client.register_script(_COUNT)
        self._flags = client.register_script(_FLAGS)

    def _base(self, box: str) -> str:
        return f"{self._prefix}:{{{box}}}"

    async def count(self, box: str, windows: Sequence[tuple[str, float]]) -> list[int]:
        base = self._base(box)
        args: list[Any] = [base, os.urandom(8).hex()]
        for name, window in windows:
            args += [name, max(1, round(window * 1000))]
        result = await self._count(keys=[base + ":gen"], args=args)
        return [int(x) for x in result]

    async def set_flag(self, box: str, name: str, ttl_s: float) -> bool:
        base = self._base(box)
        ttl = max(1, round(ttl_s * 1000))
        (ok,) = await self._flags(keys=[base + ":gen"], args=[base, "set", ttl, name])
        return bool(int(ok))

    async def flags(self, box: str, names: Sequence[str]) -> list[float | None]:
        base = self._base(box)
        result = await self._flags(keys=[base + ":gen"], args=[base, "get", 0, *names])
        return [int(ms) / 1000 if int(ms) > 0 else None for ms in result]

    async def reset(self, box: str) -> None:
        await self._r.incr(self._base(box) + ":gen")

    def _idem_key(self, box: str, key: str) -> str:
        return f"{self._base(box)}:idem:{key}"

    async def idem_begin(self, box: str, key: str, ttl_s: float) -> bytes | None:
        k = self._idem_key(box, key)
        if await self._r.set(k, PENDING, nx=True, px=max(1, round(ttl_s * 1000))):
            return None
        value = await self._r.get(k)
        return PENDING if value is None else bytes(value)

    async def idem_finish(self, box: str, key: str, outcome: bytes, ttl_s: float) -> None:
        await self._r.set(self._idem_key(box, key), outcome, px=max(1, round(ttl_s * 1000)))

    async def idem_release(self, box: str, key: str) -> None:
        await self._r.delete(self._idem_key(box, key))

    async def shared_secret(self, name: str) -> bytes:
        k = f"edgebox:secret:{{{name}}}"
        await self._r.set(k, os.urandom(32), nx=True)
        value = await self._r.get(k)
        return bytes(value)

    async def close(self) -> None:
        await asyncio.shield(self._r.aclose())
