"""The uplink tests reuse the gateway's real-component fixtures (device CA, stub upstream, gateway)."""

from tests.gateway.support import boxes_dir, make_gateway, pki, upstream  # noqa: F401
