"""OpenTelemetry end to end: a real OTLP/HTTP receiver in the test process decodes the protobuf export
of the box and the gateway, and one trace runs phone -> box (uplink span) -> gateway (server, admission,
classifier, quota, upstream spans) -> upstream (the traceparent it receives)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from edgebox.box.identity import BoxIdentity
from edgebox.box.registry import MemoryRegistry
from edgebox.box.server import BoxServer
from edgebox.box.uplink import GatewayResponder, UplinkConfig
from edgebox.gateway.config import TelemetrySection
from edgebox.phone import client
from edgebox.phone.keystore import PhoneKeystore
from edgebox.pki.ca import DeviceCA
from edgebox.telemetry import Telemetry, TelemetryConfig
from edgebox.transport.loopback import LoopbackListener
from tests.gateway.support import GatewayFactory, StubUpstream, make_box

PHONE_TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Receiver:
    def __init__(self) -> None:
        self.spans: list[tuple[str, object]] = []  # (service.name, span)
        self.content_types: set[str] = set()

    async def handle(self, request: web.Request) -> web.Response:
        self.content_types.add(request.content_type)
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(await request.read())
        for rs in msg.resource_spans:
            service = next(a.value.string_value for a in rs.resource.attributes if a.key == "service.name")
            for ss in rs.scope_spans:
                for span in ss.spans:
                    self.spans.append((service, span))
        return web.Response(body=b"", content_type="application/x-protobuf")


async def test_one_trace_phone_box_gateway_upstream(
    tmp_path: Path, pki: DeviceCA, upstream: StubUpstream, make_gateway: GatewayFactory
) -> None:
    rx = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", rx.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    endpoint = f"http://127.0.0.1:{runner.addresses[0][1]}"
    gw = await make_gateway(telemetry=TelemetrySection(otlp_endpoint=endpoint))
    box_tel = Telemetry.create(TelemetryConfig(service_name="edgebox-box", otlp_endpoint=endpoint))
    identity = BoxIdentity.generate()
    cert = make_box(pki, identity.box_id_hex, tmp_path)
    uplink = GatewayResponder(
        UplinkConfig(f"https://127.0.0.1:{gw.port}", pki.cert_path, cert.cert, cert.key, model="gpt-test"),
        telemetry=box_tel,
    )
    registry = MemoryRegistry()
    server = BoxServer(identity, registry, uplink)
    listener = LoopbackListener()
    task = asyncio.create_task(server.serve(listener))
    try:
        inv = registry.create_invite(identity.box_id, identity.key_hash, time.time())
        s = await client.pair(listener.connect(), PhoneKeystore.load_or_create(tmp_path / "p.json"), inv)
        answer = await s.ask("What is the capital of France?", trace=PHONE_TRACE)
        assert answer.text == "Hello!"
        await s.close()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await uplink.close()
    await asyncio.to_thread(box_tel.force_flush)
    await asyncio.to_thread(gw.telemetry.force_flush)
    box_tel.shutdown()
    await runner.cleanup()

    assert rx.content_types == {"application/x-protobuf"}
    trace_id = bytes.fromhex(PHONE_TRACE[3:35])
    ours = [(svc, sp) for svc, sp in rx.spans if sp.trace_id == trace_id]  # type: ignore[attr-defined]
    by_name = {sp.name: (svc, sp) for svc, sp in ours}  # type: ignore[attr-defined]
    for name in (
        "box.uplink",
        "POST /v1/chat/completions",
        "gateway.admission",
        "gateway.classifier",
        "gateway.quota",
        "gateway.upstream",
    ):
        assert name in by_name, (name, sorted(by_name))
    box_span = by_name["box.uplink"][1]
    server_span = by_name["POST /v1/chat/completions"][1]
    upstream_span = by_name["gateway.upstream"][1]
    assert by_name["box.uplink"][0] == "edgebox-box"
    assert by_name["gateway.upstream"][0] == "edgebox-gateway"
    # the parent chain: phone -> box -> gateway server span -> its stages
    assert box_span.parent_span_id == bytes.fromhex(PHONE_TRACE[36:52])  # type: ignore[attr-defined]
    assert server_span.parent_span_id == box_span.span_id  # type: ignore[attr-defined]
    for name in ("gateway.admission", "gateway.classifier", "gateway.quota", "gateway.upstream"):
        assert by_name[name][1].parent_span_id == server_span.span_id  # type: ignore[attr-defined]
    # ... -> the upstream: the traceparent it received names the gateway's upstream span
    sent = upstream.requests[-1][0]["traceparent"]
    assert sent[3:35] == PHONE_TRACE[3:35] and bytes.fromhex(sent[36:52]) == upstream_span.span_id  # type: ignore[attr-defined]
    # no prompt text in any span attribute
    for _, sp in ours:
        for a in sp.attributes:  # type: ignore[attr-defined]
            assert "France" not in str(a.value)
