"""Hostile input: slow bodies, schema-driven property tests against a live gateway, and the OpenAPI doc."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgebox.gateway.config import AnomalyConfig, GatewayConfig
from edgebox.gateway.openapi import openapi_document
from edgebox.gateway.secret import UpstreamKey
from edgebox.gateway.server import Gateway
from edgebox.pipeline.codes import ErrorCode
from edgebox.pipeline.openai_schema import RequestInvalid, decode_request
from edgebox.pki.ca import DeviceCA
from tests.gateway.support import UPSTREAM_KEY, GatewayFactory, StubUpstream, chat_body, client_for, make_box

DOC = Path(__file__).resolve().parents[2] / "docs" / "gateway-openapi.json"


async def test_slow_body_gets_408_and_gateway_stays_up(
    make_gateway: GatewayFactory, pki: DeviceCA, boxes_dir: Path, upstream: StubUpstream
) -> None:
    gw = await make_gateway(body_timeout_s=0.5)
    box = make_box(pki, "box-slow", boxes_dir)
    conns = []
    for _ in range(5):  # several slowloris connections at once
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", gw.port, ssl=box.ssl_context(pki), server_hostname="127.0.0.1"
        )
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Content-Length: 400\r\n\r\n{"
        )
        await writer.drain()
        conns.append((reader, writer))

    async def trickle(writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(20):
                await asyncio.sleep(0.1)
                writer.write(b" ")
                await writer.drain()
        except (ConnectionError, OSError):
            pass

    tricklers = [asyncio.create_task(trickle(w)) for _, w in conns]
    # meanwhile a well-behaved box is served
    async with client_for(gw, box, pki) as c:
        assert (await c.post("/v1/chat/completions", json=chat_body())).status == 200
    for reader, _ in conns:
        data = await asyncio.wait_for(reader.read(), timeout=5)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408") and json.loads(body)["error"]["code"] == "body_timeout"
    for t in tricklers:
        t.cancel()
    for _, w in conns:
        w.close()
    async with client_for(gw, box, pki) as c:
        assert (await c.post("/v1/chat/completions", json=chat_body())).status == 200


async def test_slow_headers_are_cut_off(make_gateway: GatewayFactory, pki: DeviceCA, boxes_dir: Path) -> None:
    gw = await make_gateway(idle_timeout_s=0.5)
    box = make_box(pki, "box-slowhdr", boxes_dir)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", gw.port, ssl=box.ssl_context(pki), server_hostname="127.0.0.1"
    )
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\n")
    closed = False
    for i in range(40):  # one header byte every 0.1 s would take 4 s
        try:
            writer.write(b"X-Slow-%d: y\r\n" % i)
            await writer.drain()
            data = await asyncio.wait_for(reader.read(100), timeout=0.1)
            if not data:
                closed = True
                break
        except TimeoutError:
            continue
        except (ConnectionError, OSError):
            closed = True
            break
    assert closed
    writer.close()


@pytest.mark.parametrize(
    "raw",
    [
        b"SECRETVERB /v1/chat/completions HTTP/1.1\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: SECRET" + b"a" * 9000 + b"\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nSECRETzz\r\n",
    ],
)
async def test_garbage_http_gets_a_typed_error_that_echoes_nothing(
    make_gateway: GatewayFactory,
    pki: DeviceCA,
    boxes_dir: Path,
    raw: bytes,
    log_stream: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw = await make_gateway()
    box = make_box(pki, "box-garbage", boxes_dir)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", gw.port, ssl=box.ssl_context(pki), server_hostname="127.0.0.1"
    )
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400"
    assert json.loads(body)["error"]["code"] in ("malformed_http", "body_incomplete")
    assert b"SECRET" not in data
    assert "SECRET" not in log_stream.getvalue() and "SECRET" not in caplog.text
    async with client_for(gw, box, pki) as c:  # still serving
        assert (await c.post("/v1/chat/completions", json=chat_body())).status == 200


async def test_huge_declared_body_is_refused_without_reading_it(
    make_gateway: GatewayFactory, pki: DeviceCA, boxes_dir: Path
) -> None:
    gw = await make_gateway()
    box = make_box(pki, "box-huge", boxes_dir)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", gw.port, ssl=box.ssl_context(pki), server_hostname="127.0.0.1"
    )
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1073741824\r\n\r\n"
    )
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=5)
    assert data.startswith(b"HTTP/1.1 413") and b"body_too_large" in data
    writer.close()


def test_openapi_document_is_current() -> None:
    current = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    if not DOC.exists() or DOC.read_text() != current:
        pytest.fail(f"{DOC} is stale: regenerate with `python -m edgebox.gateway.openapi > {DOC}`")


# ---- property tests: a live gateway in a background loop, a plain blocking HTTPS client --------------


class LiveGateway:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.ca = DeviceCA.create(tmp / "pki")
        self.ca.write_server_cert(["127.0.0.1"])
        (tmp / "b").mkdir()
        self.box = make_box(self.ca, "box-fuzz", tmp / "b")
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        self.ctx = self.box.ssl_context(self.ca)
        self.conn: http.client.HTTPSConnection | None = None

    async def _start(self) -> None:
        from aiohttp import web

        self.upstream = StubUpstream()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.upstream.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        cfg = GatewayConfig(
            listen_port=0,
            pki_dir=str(self.tmp / "pki"),
            upstream_url=f"http://127.0.0.1:{self.runner.addresses[0][1]}/v1",
            audit_file=str(self.tmp / "audit.jsonl"),
            quota_tokens=10**9,
            quota_max_inflight=10**6,
            anomaly=AnomalyConfig(enabled=False),
            classifier="rules",
        )
        self.gw = Gateway(cfg, upstream_key=UpstreamKey(UPSTREAM_KEY))
        await self.gw.start()

    async def _stop(self) -> None:
        await self.gw.stop()
        await self.runner.cleanup()

    def post(self, body: bytes, content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(
                    "127.0.0.1", self.gw.port, context=self.ctx, timeout=10
                )
            try:
                self.conn.request(
                    "POST", "/v1/chat/completions", body=body, headers={"Content-Type": content_type}
                )
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return resp.status, json.loads(data) if data.startswith(b"{") else {"raw": data.decode()}
            except (http.client.RemoteDisconnected, ConnectionError, ssl.SSLError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    g = LiveGateway(tmp_path_factory.mktemp("live"))
    yield g
    g.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def strategy_from_schema(schema: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Hypothesis strategy for the JSON Schema subset msgspec emits (refs, anyOf, enum, objects, ...)."""
    if "$ref" in schema:
        return st.deferred(
            lambda: strategy_from_schema(components[schema["$ref"].rsplit("/", 1)[1]], components)
        )
    if "anyOf" in schema:
        return st.one_of([strategy_from_schema(s, components) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        props = {k: strategy_from_schema(v, components) for k, v in schema.get("properties", {}).items()}
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: v for k, v in props.items() if k in required},
            optional={k: v for k, v in props.items() if k not in required},
        )
    if kind == "array":
        return st.lists(
            strategy_from_schema(schema["items"], components),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 5), 5),
        )
    if kind == "string":
        lo, hi = schema.get("minLength", 0), min(schema.get("maxLength", 200), 200)
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda x: lo <= len(x) <= hi)
        return st.text(min_size=lo, max_size=hi)
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind is None and not set(schema) - {"default", "title", "description"}:
        return json_values  # an untyped field (msgspec `Any`)
    raise AssertionError(f"schema construct not covered: {schema}")


_DOC = openapi_document()
_BODY_SCHEMA = _DOC["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"][
    "schema"
]
# requests generated from the published OpenAPI document itself
valid_requests = strategy_from_schema(_BODY_SCHEMA, _DOC["components"]["schemas"])


@st.composite
def mutated_requests(draw: st.DrawFn) -> dict[str, Any]:
    req: dict[str, Any] = draw(valid_requests)
    field = draw(
        st.sampled_from(
            [
                "model",
                "messages",
                "stream",
                "max_tokens",
                "temperature",
                "stop",
                "extra",
                "messages.0",
                "messages.0.role",
                "messages.0.content",
                "messages.0.extra",
            ]
        )
    )
    value = draw(json_values)
    if field.startswith("messages.0"):
        parts = field.split(".")
        if len(parts) == 2:
            req["messages"][0] = value
        else:
            req["messages"][0][parts[2]] = value
    else:
        req[field] = value
    return req


PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@PROPERTY
@given(valid_requests)
def test_valid_requests_are_served(live: LiveGateway, req: dict[str, Any]) -> None:
    status, body = live.post(json.dumps(req).encode())
    if status == 400:
        # random text can look like an injection; non-text parts are in the schema only to be refused
        assert body["error"]["code"] in ("prompt_blocked", "unsupported_content"), body
    else:
        assert status == 200, body


@PROPERTY
@given(mutated_requests())
def test_mutated_requests_get_typed_errors(live: LiveGateway, req: dict[str, Any]) -> None:
    status, body = live.post(json.dumps(req).encode())
    assert status in (200, 400), body
    if status == 400:
        assert body["error"]["code"] in set(ErrorCode) and body["error"]["message"]


@PROPERTY
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_bytes_get_typed_errors(live: LiveGateway, raw: bytes) -> None:
    status, body = live.post(raw)
    assert status == 400 and body["error"]["code"] in (
        "malformed_json",
        "invalid_request",
        "missing_field",
        "unknown_field",
        "body_incomplete",
    )


marked_text = st.text(max_size=12).map(lambda t: "\u00a7" + t)  # "§" never appears in our messages
marked_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | marked_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(marked_text, children, max_size=4),
    max_leaves=20,
)
request_shaped = st.fixed_dictionaries(
    {
        "model": marked_values | st.just("m"),
        "messages": st.lists(
            st.dictionaries(st.sampled_from(["role", "content"]) | marked_text, marked_values), max_size=3
        ),
    },
    optional={"stop": marked_values, "user": marked_values, "temperature": marked_values},
)


@settings(max_examples=200, deadline=None)
@given(marked_values | request_shaped)
def test_decoder_only_ever_raises_request_invalid(value: Any) -> None:
    try:
        decode_request(json.dumps(value).encode())
    except RequestInvalid as exc:
        # the error names a path and a kind, never a string (value or key) from the request
        assert "\u00a7" not in str(exc) and "\u00a7" not in exc.path
