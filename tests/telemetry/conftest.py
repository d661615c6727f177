"""The gateway fixtures (real CA, stub upstream, gateway replicas) for the telemetry tests."""

from tests.gateway.support import boxes_dir, make_gateway, pki, upstream  # noqa: F401
