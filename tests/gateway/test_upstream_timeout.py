"""The gateway's upstream timeout (`upstream_timeout_s`) is a read timeout, not a total: a streamed
answer that lasts several timeouts with shorter gaps is relayed whole; a stream that stalls longer is
ended without its closing [DONE] (the box then reports upstream_unavailable, tests/box/test_uplink.py).
Scaled-down timeouts; no durations are asserted."""

from __future__ import annotations

from pathlib import Path

from edgebox.pki.ca import DeviceCA
from tests.gateway.support import GatewayFactory, StubUpstream, chat_body, client_for, make_box

READ_S = 0.6
GAP_S = 0.1
LONG = tuple(f"w{i} " for i in range(20))  # 20 gaps of GAP_S: the stream lasts > 3 read timeouts


async def test_a_long_stream_with_short_gaps_is_relayed_whole(
    make_gateway: GatewayFactory, pki: DeviceCA, boxes_dir: Path, upstream: StubUpstream
) -> None:
    gw = await make_gateway(upstream_timeout_s=READ_S)
    box = make_box(pki, "box-longstream", boxes_dir)
    upstream.words, upstream.chunk_delay_s = LONG, GAP_S
    async with client_for(gw, box, pki) as c:
        r = await c.post("/v1/chat/completions", json=chat_body(stream=True))
        assert r.status == 200
        text = (await r.read()).decode()
    assert all(f'"{w}"' in text for w in LONG)
    assert text.rstrip().endswith("data: [DONE]")


async def test_a_stalled_stream_ends_without_done(
    make_gateway: GatewayFactory, pki: DeviceCA, boxes_dir: Path, upstream: StubUpstream
) -> None:
    gw = await make_gateway(upstream_timeout_s=READ_S)
    box = make_box(pki, "box-stall", boxes_dir)
    upstream.stall_s = 5 * READ_S
    async with client_for(gw, box, pki) as c:
        r = await c.post("/v1/chat/completions", json=chat_body(stream=True))
        assert r.status == 200  # the stream had begun
        text = (await r.read()).decode()
    assert '"Hel"' in text and '"lo"' not in text
    assert "[DONE]" not in text  # a cut-short stream is never presented as complete
