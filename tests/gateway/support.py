"""Real components for the gateway tests: a device CA, a stub OpenAI-compatible upstream, redis-server,
gateway replicas on loopback with real TLS 1.3 client certificates, and a log capture to grep."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from aiohttp import web

from edgebox.gateway.config import AnomalyConfig, GatewayConfig
from edgebox.gateway.secret import UpstreamKey
from edgebox.gateway.server import Gateway
from edgebox.log import configure_logging
from edgebox.pki.ca import DeviceCA, key_pem, make_csr, new_private_key

UPSTREAM_KEY = "sk-test-UPSTREAMKEY-7f3a9c1e5b2d4a68"


@dataclass
class Box:
    box_id: str
    cert: Path
    key: Path
    serial: str

    def ssl_context(self, ca: DeviceCA) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(ca.cert_path))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


def make_box(
    ca: DeviceCA,
    box_id: str,
    directory: Path,
    *,
    lifetime: dt.timedelta = dt.timedelta(hours=24),
    not_before: dt.datetime | None = None,
) -> Box:
    key = new_private_key()
    issued = ca.issue_box(make_csr(key), box_id, lifetime=lifetime, not_before=not_before)
    cert_path = directory / f"{box_id}-{issued.serial[:8]}.crt"
    key_path = directory / f"{box_id}-{issued.serial[:8]}.key"
    cert_path.write_bytes(issued.pem)
    key_path.write_bytes(key_pem(key))
    return Box(box_id, cert_path, key_path, issued.serial)


@pytest.fixture
def pki(tmp_path: Path) -> DeviceCA:
    ca = DeviceCA.create(tmp_path / "pki")
    ca.write_server_cert(["localhost", "127.0.0.1"])
    return ca


@pytest.fixture
def boxes_dir(tmp_path: Path) -> Path:
    d = tmp_path / "boxes"
    d.mkdir()
    return d


@pytest.fixture
def log_stream(tmp_path: Path) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("debug", stream=stream)
    yield stream
    configure_logging("warning")


@dataclass
class StubUpstream:
    """An OpenAI-compatible upstream that records what it received."""

    url: str = ""
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    mode: str = "ok"  # ok | echo_key_error | rate_limited | hang | stream_abort
    prompt_tokens: int = 10
    completion_tokens: int = 5
    delay_s: float = 0.0  # a slow upstream: requests pile up in flight
    chunk_delay_s: float = 0.0  # a slowly streaming upstream: this long before each streamed chunk
    words: tuple[str, ...] = ("Hel", "lo", "!")  # the streamed answer, one chunk each
    stall_s: float = 0.0  # a stream that stalls: this long after the first chunk
    bill_total: int | None = None  # bill this many tokens whatever the request (a misbilling upstream)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((dict(request.headers), body))
        if self.mode == "echo_key_error":
            msg = f"Incorrect API key provided: {request.headers.get('Authorization')}"
            return web.json_response(
                {"error": {"message": msg}},
                status=401,
                headers={"x-upstream-auth": request.headers.get("Authorization", "")},
            )
        if self.mode == "rate_limited":
            return web.json_response({"error": {"message": "slow down"}}, status=429)
        if self.mode == "hang":
            await asyncio.sleep(1.0)  # longer than the upstream timeouts the tests set
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        cap = body.get("max_tokens") or body.get("max_completion_tokens") or 16
        completion = min(cap, self.completion_tokens)
        usage = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }
        if self.bill_total is not None:
            usage = {
                "prompt_tokens": self.bill_total,
                "completion_tokens": 0,
                "total_tokens": self.bill_total,
            }
        leaky = {
            "x-litellm-model-api-base": "https://secret-upstream.internal/v1",
            "openai-organization": "org-secret",
            "x-request-id": "req_upstream_1",
            "openai-processing-ms": "12",
            "Server": "upstream-secret-server",
        }
        if body.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **leaky})
            await resp.prepare(request)
            include = bool((body.get("stream_options") or {}).get("include_usage"))
            if self.mode == "stream_abort":
                await resp.write(b'data: {"choices": [{"index": 0, "delta": {"content": "Hel"}}]}\n\n')
                await asyncio.sleep(0.05)
                assert request.transport is not None
                request.transport.abort()
                return resp
            last_word = len(self.words) - 1
            for i, word in enumerate(self.words):
                if self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
                if i == 1 and self.stall_s:
                    await asyncio.sleep(self.stall_s)
                stop = "stop" if i == last_word else None
                chunk: dict[str, Any] = {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": stop}],
                }
                if include:
                    chunk["usage"] = None
                await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            if include:
                last = {"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": usage}
                await resp.write(b"data: " + json.dumps(last).encode() + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Hello!"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            },
            headers=leaky,
        )


@pytest.fixture
async def upstream() -> AsyncIterator[StubUpstream]:
    stub = StubUpstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", stub.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    stub.url = f"http://127.0.0.1:{port}/v1"
    yield stub
    await runner.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail(
            "redis-server missing: run `make test` (bootstrap installs it) or apt-get install redis-server"
        )
    port = free_port()
    d = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(d),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    else:
        proc.kill()
        pytest.fail("redis-server did not start")
    client.close()
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Three Redis Cluster masters on loopback (--cluster-enabled + redis-cli --cluster create)."""
    exe, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if exe is None or cli is None:
        pytest.fail("redis-server/redis-cli missing: run `make test` (bootstrap installs redis-server)")
    d = tmp_path_factory.mktemp("cluster")
    ports = [free_port() for _ in range(3)]
    # The cluster bus defaults to port + 10000, which is past 65535 for half of the ephemeral range:
    # give each node its own free bus port.
    buses = [free_port() for _ in range(3)]
    procs = []
    for port, bus in zip(ports, buses, strict=True):
        node = d / str(port)
        node.mkdir()
        procs.append(
            subprocess.Popen(
                [
                    exe,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    str(bus),
                    "--cluster-config-file",
                    str(node / "nodes.conf"),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(node),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    try:
        for port in ports:
            client = redis.Redis(port=port)
            for _ in range(200):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.02)
            client.close()
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *[f"127.0.0.1:{p}" for p in ports],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        client = redis.Redis(port=ports[0])
        for _ in range(300):
            if client.cluster("info").get("cluster_state") == "ok":  # redis-py parses it into a dict
                break
            time.sleep(0.05)
        else:
            pytest.fail("redis cluster did not come up")
        client.close()
        yield "redis-cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


@pytest.fixture
def fresh_cluster(redis_cluster: str) -> str:
    from redis.cluster import ClusterNode, RedisCluster

    nodes = [
        ClusterNode("127.0.0.1", int(x.rsplit(":", 1)[1])) for x in redis_cluster.split("//")[1].split(",")
    ]
    rc = RedisCluster(startup_nodes=nodes)
    rc.flushall(target_nodes=RedisCluster.PRIMARIES)
    rc.close()
    return redis_cluster


@pytest.fixture
def fresh_redis(redis_url: str) -> str:
    r = redis.Redis.from_url(redis_url)
    r.flushall()
    r.close()
    return redis_url


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def make_gateway(
    pki: DeviceCA, upstream: StubUpstream, tmp_path: Path
) -> AsyncIterator[GatewayFactory]:
    started: list[Gateway] = []
    key_file = tmp_path / "upstream.key"
    key_file.write_text(UPSTREAM_KEY + "\n")

    async def factory(**overrides: Any) -> Gateway:
        anomaly = overrides.pop("anomaly", AnomalyConfig())
        clock = overrides.pop("anomaly_clock", None)
        classifier = overrides.pop("classifier_impl", None)
        store = overrides.pop("store", None)  # a CertStore (e.g. with a simulated clock)
        settings: dict[str, Any] = {
            "listen_host": "127.0.0.1",
            "listen_port": 0,
            "pki_dir": str(pki.directory),
            "upstream_url": upstream.url,
            "upstream_key_file": str(key_file),
            "audit_file": str(tmp_path / "audit.jsonl"),
            "revocation_sweep_s": 0.2,
            "anomaly": anomaly,
            "classifier": "rules",  # the model classifier has its own tests (it needs `make models`)
        }
        settings.update(overrides)
        cfg = GatewayConfig(**settings)
        gw = Gateway(
            cfg,
            upstream_key=UpstreamKey(UPSTREAM_KEY),
            anomaly_clock=clock,
            classifier=classifier,
            store=store,
        )
        await gw.start()
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        await gw.stop()


def client_for(gw: Gateway, box: Box, ca: DeviceCA, **kw: Any) -> aiohttp.ClientSession:
    conn = aiohttp.TCPConnector(ssl=box.ssl_context(ca), **kw)
    return aiohttp.ClientSession(base_url=f"https://127.0.0.1:{gw.port}", connector=conn)


def chat_body(content: str = "What is the capital of France?", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": content}], **extra}


def read_audit(tmp_path: Path) -> list[dict[str, Any]]:
    p = tmp_path / "audit.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
