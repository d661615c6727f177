"""Redis connection set-up for everything that shares state through Redis (quotas, the certificate
store, the gateway's device state), in one place below all of them.

Theory of operation: `connect(url)` returns a `redis.asyncio` client. `redis://host:port/db` (or
`rediss://`) is one server, with a blocking pool that waits for a free connection instead of failing
under load. `redis-cluster://host:port[,host:port...]` is a Redis Cluster: the client discovers the
slots from any seed node and follows MOVED/ASK. Callers hash-tag their keys per device
(`prefix:{device}:...`) so that a multi-key script for one device always runs on one node.
"""

from __future__ import annotations

from typing import Any

CLUSTER_SCHEME = "redis-cluster://"


def is_cluster(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEME)


def connect(url: str, *, max_connections: int = 64) -> Any:
    import redis.asyncio as aioredis

    if is_cluster(url):
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        nodes = []
        for part in url[len(CLUSTER_SCHEME) :].split("/")[0].split(","):
            host, _, port = part.rpartition(":")
            nodes.append(ClusterNode(host or "127.0.0.1", int(port)))
        return RedisCluster(startup_nodes=nodes, max_connections=max_connections)
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=5)
    return aioredis.Redis(connection_pool=pool)
