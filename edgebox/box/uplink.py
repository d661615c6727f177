"""Forwarding a phone's prompt to the cloud gateway over mTLS (the box's uplink responder).

Theory of operation: `GatewayResponder` is a `Responder`: it turns a session `prompt` into an
OpenAI-compatible streaming request, sends it to the gateway over one pooled HTTPS connection that
presents the box's client certificate (TLS 1.3, the device CA pinned as the only trust anchor), and
yields the streamed deltas back, ending with a `done` that carries the usage the gateway reports.
The W3C trace context travels the whole way: the phone's `trace` (or a fresh one) goes out as
`traceparent` as a child span, and the gateway's echo is what `done.trace` reports. Gateway refusals
map onto the session's typed error codes (quota -> `quota_exceeded` with retry-after, blocked
prompt -> `injection_blocked`, anything else -> `upstream_error`); an unreachable gateway is
`upstream_unavailable`. The device never holds the upstream API key: the gateway injects it.

Timeouts are per read, never a total (`read_timeout_s` between two reads of the stream, so an answer
that streams for minutes is never cut); a timeout or a refused connection is `upstream_unavailable`,
and so is a stream that ends without its closing `[DONE]` (the gateway ends a relay whose upstream
timed out mid-stream that way): a prefix is never passed off, or cached, as the whole answer.
Headers (contract 6): `traceparent`, `Idempotency-Key` for a request from the durable outbox (the
gateway forwards one key at most once), `X-Edgebox-Phone` (the phone id, so the gateway audits and
counts anomalies per phone). A refusal keeps the gateway's code (`GatewayRefusal.gateway_code`), so
the box can suspend a phone the gateway refused with `phone_suspended`. The client key is the box's
identity key held in memory (loaded into OpenSSL through a memfd, never a file on disk) or, in
development, a PEM key file. `reload()` picks up a renewed certificate for the next request.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import serialization

from edgebox.box.responder import RequestContext
from edgebox.log import get_logger
from edgebox.pipeline import trace as tracing
from edgebox.pipeline.codes import ErrorCode
from edgebox.pipeline.openai_schema import chat_request_body
from edgebox.pipeline.sse import SseError, SseParser, decode_chunk
from edgebox.session.messages import Done, ErrorKind, MessageError, Prompt, Usage
from edgebox.telemetry import SpanKind, Telemetry, context_from_traceparent, traceparent

log = get_logger("edgebox.box.uplink")


class GatewayRefusal(MessageError):
    """The gateway answered with a typed refusal; `gateway_code` is its code (docs/gateway.md)."""

    gateway_code: str = "upstream_error"


@dataclass(frozen=True)
class UplinkConfig:
    gateway_url: str  # e.g. https://gateway.example:8443
    ca_file: Path  # the device CA (pins the gateway's server certificate)
    cert_file: Path  # this box's client certificate (short-lived)
    key_file: Path | None = None  # development: a PEM key file; else `private_key`
    model: str = "default"
    read_timeout_s: float = 60.0  # between two reads, never a total
    connect_timeout_s: float = 10.0
    private_key: Any = field(default=None, repr=False)  # an in-memory key (the box identity)


def _load_key_in_memory(ctx: ssl.SSLContext, cert_file: Path, key: Any) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.memfd_create("edgebox-client-key", os.MFD_CLOEXEC)
    try:
        os.write(fd, cert_file.read_bytes() + b"\n" + pem)
        ctx.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def client_ssl_context(cfg: UplinkConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cfg.ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if cfg.private_key is not None:
        _load_key_in_memory(ctx, cfg.cert_file, cfg.private_key)
    else:
        ctx.load_cert_chain(str(cfg.cert_file), None if cfg.key_file is None else str(cfg.key_file))
    return ctx


class GatewayResponder:
    def __init__(self, cfg: UplinkConfig, *, telemetry: Telemetry | None = None) -> None:
        self.cfg = cfg
        self.telemetry = telemetry  # OpenTelemetry: a `box.uplink` client span per request when set
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=client_ssl_context(self.cfg), limit=8)
            timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=self.cfg.connect_timeout_s, sock_read=self.cfg.read_timeout_s
            )
            self._session = aiohttp.ClientSession(self.cfg.gateway_url, connector=connector, timeout=timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def reload(self) -> None:
        """Use the (renewed) certificate from the next request on."""
        old, self._session = self._session, None
        if old is not None:
            await old.close()

    async def respond(
        self, prompt: Prompt, ctx: RequestContext, *, idempotency_key: str | None = None
    ) -> AsyncIterator[str | Done]:
        parent = tracing.parse(prompt.trace) or tracing.new()
        body = chat_request_body(
            prompt.messages,
            model=self.cfg.model,
            max_tokens=prompt.options.max_tokens,
            temperature=prompt.options.temperature,
        )
        span = None
        if self.telemetry is not None:
            span = self.telemetry.tracer.start_span(
                "box.uplink", context=context_from_traceparent(parent.format()), kind=SpanKind.CLIENT
            )
        hop = traceparent(span) if span is not None else parent.child().format()
        headers = {"traceparent": hop, "Content-Type": "application/json"}
        if ctx.phone_id:
            headers["X-Edgebox-Phone"] = ctx.phone_id
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        try:
            async for item in self._exchange(prompt, ctx, parent, body, headers):
                yield item
        finally:
            if span is not None:
                span.end()

    async def _exchange(
        self,
        prompt: Prompt,
        ctx: RequestContext,
        parent: tracing.TraceParent,
        body: bytes,
        headers: dict[str, str],
    ) -> AsyncIterator[str | Done]:
        usage = Usage()
        finish: str = "stop"
        try:
            if not self.cfg.cert_file.exists():
                raise MessageError(
                    ErrorKind.upstream_unavailable,
                    "the box has no gateway certificate yet (edgebox box enroll)",
                )
            async with self._client().post("/v1/chat/completions", data=body, headers=headers) as resp:
                echoed = resp.headers.get("traceparent")
                if resp.status != 200:
                    raise await _refusal(resp)
                async for delta, chunk_usage, reason in _sse_deltas(resp):
                    if delta:
                        yield delta
                    if chunk_usage is not None:
                        usage = chunk_usage
                    if reason in ("stop", "length"):
                        finish = reason
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError) as exc:
            log.warning(
                "uplink_unavailable", phone=ctx.phone_id, trace=parent.trace_id, error=type(exc).__name__
            )
            raise MessageError(ErrorKind.upstream_unavailable, "the gateway is not reachable") from None
        yield Done(
            id=prompt.id,
            source="gateway",
            usage=usage,
            finish_reason="length" if finish == "length" else "stop",
            trace=echoed if tracing.parse(echoed) else prompt.trace,
        )


async def _refusal(resp: aiohttp.ClientResponse) -> MessageError:
    try:
        err = (await resp.json(content_type=None))["error"]
        code = str(err["code"])
    except (ValueError, KeyError, TypeError, aiohttp.ClientError):
        code = "upstream_error"
    known = ErrorCode.parse(code)
    kind = ErrorKind(known.session_kind) if known is not None else ErrorKind.upstream_error
    exc = GatewayRefusal(kind, f"the gateway refused the request ({code})")
    exc.gateway_code = code
    retry = resp.headers.get("Retry-After")
    exc.retry_after_s = float(retry) if retry and retry.isdigit() else None
    return exc


async def _sse_deltas(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Usage | None, str | None]]:
    """(text delta, usage if this chunk has it, finish_reason) for each chunk event
    (edgebox.pipeline.sse parses the stream)."""
    parser = SseParser()
    try:
        async for raw in resp.content.iter_any():
            for event in parser.feed(raw):
                if event.done:
                    return
                if not event.data:
                    continue
                chunk = decode_chunk(event)
                u = chunk.usage
                usage = Usage(u.prompt_tokens, u.completion_tokens, u.total) if u is not None else None
                yield chunk.text, usage, chunk.finish_reason
        for event in parser.close():
            if event.done:
                return
            if event.data:
                chunk = decode_chunk(event)
                u = chunk.usage
                usage = Usage(u.prompt_tokens, u.completion_tokens, u.total) if u is not None else None
                yield chunk.text, usage, chunk.finish_reason
    except SseError:
        raise MessageError(ErrorKind.upstream_error, "the gateway sent a malformed stream event") from None
    log.warning("uplink_stream_cut_short")
    raise MessageError(ErrorKind.upstream_unavailable, "the gateway's answer was cut short")
