"""Two gateway replicas sharing a real redis-server: exact quotas under concurrency, shared revocation."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import aiohttp
import pytest

from edgebox.pipeline.quota import (
    MemoryQuota,
    QuotaExceeded,
    QuotaLimit,
    QuotaRequestTooLarge,
    RedisQuota,
)
from edgebox.pki.ca import DeviceCA
from edgebox.redisconn import connect as connect_redis
from tests.gateway.support import GatewayFactory, StubUpstream, chat_body, client_for, make_box, read_audit


async def test_quota_exact_across_replicas_under_concurrent_load(
    make_gateway: GatewayFactory,
    pki: DeviceCA,
    boxes_dir: Path,
    upstream: StubUpstream,
    fresh_redis: str,
    tmp_path: Path,
) -> None:
    limit = 2_000
    gw_a = await make_gateway(redis_url=fresh_redis, quota_tokens=limit, quota_window_s=600)
    gw_b = await make_gateway(redis_url=fresh_redis, quota_tokens=limit, quota_window_s=600)
    # the upstream bills the full completion cap plus 30 prompt tokens: a bit *more* than the gateway's
    # estimate for these short prompts (~126): the adversarial case the overshoot bound is about
    upstream.completion_tokens = 10_000
    upstream.prompt_tokens = 30
    devices = [make_box(pki, f"box-{i}", boxes_dir) for i in range(4)]
    ok: dict[str, int] = {d.box_id: 0 for d in devices}
    limited: dict[str, int] = {d.box_id: 0 for d in devices}

    async def hammer(box_index: int, gw_index: int) -> None:
        box = devices[box_index]
        gw = (gw_a, gw_b)[gw_index]
        async with client_for(gw, box, pki, limit=8) as c:

            async def one() -> None:
                r = await c.post(
                    "/v1/chat/completions", json=chat_body(f"q {random.random()}", max_tokens=100)
                )
                if r.status == 200:
                    ok[box.box_id] += (await r.json())["usage"]["total_tokens"]
                else:
                    assert r.status == 429 and "Retry-After" in r.headers
                    limited[box.box_id] += 1

            await asyncio.gather(*(one() for _ in range(25)))

    await asyncio.gather(*(hammer(b, g) for b in range(4) for g in (0, 1)))
    estimate = 130  # the largest single-request charge
    for d in devices:
        # each device hit its limit; what it was charged never exceeds the limit by more than one estimate
        assert limited[d.box_id] > 0
        assert limit - estimate < ok[d.box_id] <= limit + estimate, (d.box_id, ok[d.box_id])
        assert await gw_a.quota.used(d.box_id, gw_a.quota_limit) == ok[d.box_id]
    assert all(a["device"].startswith("box-") for a in read_audit(tmp_path))


async def test_revocation_on_one_replica_refuses_on_the_other_at_once(
    make_gateway: GatewayFactory, pki: DeviceCA, boxes_dir: Path, upstream: StubUpstream, fresh_redis: str
) -> None:
    gw_a = await make_gateway(redis_url=fresh_redis)
    gw_b = await make_gateway(redis_url=fresh_redis)
    box = make_box(pki, "box-rr", boxes_dir)
    async with client_for(gw_b, box, pki) as cb:
        assert (await cb.post("/v1/chat/completions", json=chat_body())).status == 200
        await gw_a.store.revoke_box("box-rr", "operator via replica A")
        try:
            r = await cb.post("/v1/chat/completions", json=chat_body())
            assert r.status == 403 and (await r.json())["error"]["code"] == "certificate_revoked"
        except aiohttp.ServerDisconnectedError:
            pass  # replica B's sweep already closed the keep-alive connection: also a refusal
    async with client_for(gw_b, box, pki) as cb:
        r = await cb.post("/v1/chat/completions", json=chat_body())
        assert r.status == 403
    # the live connection on replica B is closed by its sweep without any further request
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", gw_b.port, ssl=box.ssl_context(pki), server_hostname="127.0.0.1"
    )
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10\r\n\r\n"
    )
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=5)  # server answers 403 and closes
    assert b"403" in data.split(b"\r\n", 1)[0]
    writer.close()
    assert [r.subject for r in await gw_b.store.list_revoked()] == ["box:box-rr"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_sliding_window_semantics(backend: str, fresh_redis: str) -> None:
    limit = QuotaLimit(tokens=100, window_s=0.6)
    clock = FakeClock()
    if backend == "memory":
        q: MemoryQuota | RedisQuota = MemoryQuota(clock)
    else:
        q = RedisQuota(connect_redis(fresh_redis), clock=clock)
    try:
        r1 = await q.reserve("k", 60, limit)
        clock.now += 0.3
        r2 = await q.reserve("k", 40, limit)
        with pytest.raises(QuotaExceeded) as exc:
            await q.reserve("k", 10, limit)
        # the first charge frees in ~0.3 s (sliding), not at a fixed-window reset
        assert exc.value.retry_after == pytest.approx(0.3, abs=0.002)
        await q.reconcile(r2, 20, limit)  # real usage lower than the estimate frees room at once
        assert await q.used("k", limit) == 80
        await q.reserve("k", 20, limit)
        with pytest.raises(QuotaRequestTooLarge):
            await q.reserve("k", 101, limit)
        clock.now += 0.35
        assert await q.used("k", limit) == 40  # r1 (60) slid out
        # reconciling a reservation whose window ended charges it afresh
        clock.now += 0.65
        await q.reconcile(r1, 70, limit)
        assert await q.used("k", limit) == 70
        assert await q.used("other", limit) == 0
    finally:
        await q.close()


async def test_redis_quota_concurrent_clients_never_overcommit(fresh_redis: str) -> None:
    limit = QuotaLimit(tokens=1_000, window_s=60)
    clients = [RedisQuota(connect_redis(fresh_redis)) for _ in range(3)]
    admitted = 0

    async def attempt(q: RedisQuota, est: int) -> None:
        nonlocal admitted
        try:
            await q.reserve("dev", est, limit)
            admitted += est
        except QuotaExceeded:
            pass

    await asyncio.gather(*(attempt(clients[i % 3], 7 + i % 13) for i in range(400)))
    assert admitted <= 1_000 and admitted > 1_000 - 20
    assert await clients[0].used("dev", limit) == admitted
    for q in clients:
        await q.close()


async def test_redis_cert_store(fresh_redis: str) -> None:
    import datetime as dt

    from edgebox.pki.store import RedisCertStore

    a, b = RedisCertStore(connect_redis(fresh_redis)), RedisCertStore(connect_redis(fresh_redis))
    await a.record_issued("ff01", "box-1", dt.datetime.now(dt.UTC))
    assert not await b.is_revoked("ff01", "box-1")
    await a.revoke_serial("FF01", "lost")
    assert await b.is_revoked("ff01", "box-1")
    await a.revoke_box("box-2", "stolen")
    assert await b.is_revoked("0001", "box-2") and not await b.is_revoked("0001", "box-3")
    assert [c.revoked for c in await b.list_certs()] == [True]
    assert await b.reinstate_box("box-2") and not await a.is_revoked("0001", "box-2")
    assert [r.subject for r in await b.list_revoked()] == ["serial:ff01"]
    await a.close()
    await b.close()
