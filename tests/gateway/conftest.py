"""Fixtures for the gateway tests (defined in tests/gateway/support.py with the helpers)."""

from tests.gateway.support import (  # noqa: F401
    boxes_dir,
    fresh_cluster,
    fresh_redis,
    log_stream,
    make_gateway,
    pki,
    redis_cluster,
    redis_url,
    upstream,
)
