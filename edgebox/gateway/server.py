"""The gateway server: mTLS identity, revocation, validation, injection check, quota, forwarding.

Theory of operation — one request on `POST /v1/chat/completions`:
1. TLS 1.3 with a client certificate from the device CA is required by the TLS layer itself; the box id
   is read only from the verified certificate's SAN URI (`urn:edgebox:box:<id>`), parsed once per
   connection and cached on it. Headers can never claim an identity.
2. The shared `CertStore` is asked on every request whether the box or this serial is revoked; a
   background sweep also aborts live connections of revoked (or expired) boxes, so a long stream or a
   keep-alive connection cannot outlive a revocation by more than one sweep interval.
3. `traceparent` is parsed (or minted), bound to every log line of the request, forwarded upstream with
   a new span id, and echoed back.
4. The body is read under a size cap and a deadline (slow bodies get 408), decoded by the strict
   msgspec schema, scored by the injection `Classifier`, and an upper-bound token estimate is reserved
   in the quota backend (429 + Retry-After when it does not fit).
5. The validated request is re-encoded (so the upstream sees exactly what was validated), with a
   completion cap and `stream_options.include_usage` forced, and sent on one shared keep-alive upstream
   session with the upstream key injected as the only place the key is ever used. Responses go back with
   only our own headers (content type, traceparent): nothing identifying the upstream. Upstream errors
   become typed gateway errors; the upstream's error text is never relayed.
6. Real usage (from the JSON body, or the final SSE usage chunk) reconciles the reservation; a usage
   chunk the client did not ask for is dropped from the stream.
7. One audit record per request; the anomaly watch sees validation failures, blocked injections,
   request rate and prompt digests, and on a crossed threshold revokes the box (shared store), aborts its
   connections, logs an alert and posts the optional webhook.
`POST /v1/pki/renew` signs a CSR for the box id of the presenting (valid, unrevoked) certificate.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import ssl
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import structlog
from aiohttp import web, web_protocol

from edgebox.errors import ConfigError, EdgeboxError
from edgebox.gateway.anomaly import AnomalyVerdict, AnomalyWatch
from edgebox.gateway.audit import AuditLog
from edgebox.gateway.config import GatewayConfig
from edgebox.gateway.errors import GatewayError, error_body
from edgebox.gateway.openapi import openapi_document
from edgebox.gateway.secret import UpstreamKey
from edgebox.log import get_logger
from edgebox.pipeline import trace
from edgebox.pipeline.chat import total_content_chars
from edgebox.pipeline.classifier import Classifier, Decision, InjectionPolicy
from edgebox.pipeline.openai_schema import (
    ChatCompletionRequest,
    RequestInvalid,
    StreamOptions,
    completion_cap,
    decode_request,
    encode_request,
)
from edgebox.pipeline.quota import (
    MemoryQuota,
    QuotaBackend,
    QuotaExceeded,
    QuotaLimit,
    QuotaRequestTooLarge,
    RedisQuota,
    Reservation,
    connect_redis,
    estimate_tokens,
)
from edgebox.pipeline.rules import RuleClassifier
from edgebox.pipeline.scorecache import CachedClassifier
from edgebox.pipeline.sse import USAGE_DECODER, SseError, SseParser, Usage, UsageFilter
from edgebox.pki.ca import BOX_URI_PREFIX, CsrInvalid, DeviceCA, PkiError
from edgebox.pki.store import CertStore, RedisCertStore, SqliteCertStore

log = get_logger("edgebox.gateway")

CHAT_PATH = "/v1/chat/completions"
RENEW_PATH = "/v1/pki/renew"
KNOWN_PATHS = {CHAT_PATH: "POST", RENEW_PATH: "POST", "/openapi.json": "GET", "/healthz": "GET"}
MAX_UPSTREAM_BODY = 16 * 1024 * 1024
DRAIN_FACTOR = 4
MAX_SSE_EVENT = 1024 * 1024
_SERVER_HEADER = "edgebox"
_CLOSE_AFTER = web.RequestKey("edgebox_close_after", bool)


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    box_id: str
    serial: str
    not_after: float  # epoch seconds


def identity_from_peercert(peer: dict[str, Any] | None) -> DeviceIdentity | None:
    """The device identity of a verified peer certificate (ssl.getpeercert() form), or None."""
    if not peer:
        return None
    box_id = None
    for kind, value in peer.get("subjectAltName", ()):
        if kind == "URI" and isinstance(value, str) and value.startswith(BOX_URI_PREFIX):
            box_id = value[len(BOX_URI_PREFIX) :]
            break
    serial = str(peer.get("serialNumber", "")).lower().lstrip("0")
    not_after = peer.get("notAfter")
    if not box_id or not serial or not isinstance(not_after, str):
        return None
    return DeviceIdentity(box_id, serial, ssl.cert_time_to_seconds(not_after))


def load_classifier(name: str) -> Classifier:
    """`rules` (default, built in) or `model` (the trained classifier from `edgebox models build`)."""
    if name == "rules":
        return RuleClassifier()
    if name == "model":
        try:
            from edgebox.models.injection import InjectionClassifier

            model: Classifier = InjectionClassifier()
        except EdgeboxError as exc:
            raise ConfigError(f"classifier 'model' unavailable [{exc.code}]: {exc}") from None
        return model
    raise ConfigError(f"unknown classifier {name!r} (use 'rules' or 'model')")


def server_ssl_context(ca_cert: Path, server_cert: Path, server_key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(ca_cert))
    ctx.load_cert_chain(str(server_cert), str(server_key))
    return ctx


class _TypedErrorHandler(web_protocol.RequestHandler):
    """aiohttp's protocol handler with typed JSON errors for HTTP-level garbage.

    aiohttp answers unparsable requests (bad request line, oversized header, bad chunk size) with a
    plain-text body that quotes the offending bytes, and logs them with a traceback. Here the answer is
    a typed `malformed_http` error that echoes nothing, and the log line names only the error type.
    """

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        log.info("http_protocol_error", status=status, error=type(exc).__name__ if exc else None)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; closing the connection")
        if status >= 500:
            err = GatewayError("internal_error", "internal error")
        else:
            err = GatewayError("malformed_http", "the request is not valid HTTP/1.1 or exceeds header limits")
        resp = web.Response(
            status=err.status,
            body=error_body(err),
            content_type="application/json",
            headers={"Server": _SERVER_HEADER},
        )
        resp.force_close()
        return resp


class _Outcome:
    """Mutable per-request facts for the audit record."""

    __slots__ = ("completion_tokens", "decision", "estimate", "model", "prompt_tokens", "score", "stream")

    def __init__(self) -> None:
        self.decision = "reject"
        self.model: str | None = None
        self.stream = False
        self.score: float | None = None
        self.estimate: int | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None


class Gateway:
    """One gateway replica. `start()` binds the TLS listener; `stop()` closes everything it opened."""

    def __init__(
        self,
        cfg: GatewayConfig,
        *,
        upstream_key: UpstreamKey | None,
        classifier: Classifier | None = None,
        quota: QuotaBackend | None = None,
        store: CertStore | None = None,
        anomaly_clock: Any = None,
    ) -> None:
        self.cfg = cfg
        self._key = upstream_key
        chosen = classifier or load_classifier(cfg.classifier)
        # The rule classifier is microseconds (and memoises itself): inline. Anything else (the trained
        # model) gets a score memo (repeated system prompts and history are not re-scored) and runs on a
        # thread pool, off the event loop.
        self._classifier_pool: concurrent.futures.ThreadPoolExecutor | None = None
        if isinstance(chosen, RuleClassifier):
            self.classifier: Classifier = chosen
        else:
            self.classifier = CachedClassifier(chosen)
            self._classifier_pool = concurrent.futures.ThreadPoolExecutor(
                cfg.classifier_threads, thread_name_prefix="classifier"
            )
        self.policy = InjectionPolicy(cfg.injection_flag_threshold, cfg.injection_block_threshold)
        self.quota_limit = QuotaLimit(cfg.quota_tokens, cfg.quota_window_s)
        self._quota = quota
        self._store = store
        self._redis: Any = None
        self.anomaly = (
            AnomalyWatch(cfg.anomaly, anomaly_clock) if anomaly_clock else AnomalyWatch(cfg.anomaly)
        )
        self.audit = AuditLog(cfg.audit_file)
        self._upstream_url = cfg.upstream_url.rstrip("/") + "/chat/completions"
        self._session: aiohttp.ClientSession | None = None
        self._server: asyncio.Server | None = None
        self._runner: web.AppRunner | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._bg: set[asyncio.Task[Any]] = set()
        self._idents: weakref.WeakKeyDictionary[Any, DeviceIdentity] = weakref.WeakKeyDictionary()
        self._live: dict[str, weakref.WeakSet[Any]] = {}
        self._ca: DeviceCA | None = None
        self.port = 0

    # ---- lifecycle -------------------------------------------------------------------------------
    @property
    def quota(self) -> QuotaBackend:
        assert self._quota is not None
        return self._quota

    @property
    def store(self) -> CertStore:
        assert self._store is not None
        return self._store

    async def start(self) -> None:
        cfg = self.cfg
        pki = Path(cfg.pki_dir)
        if cfg.redis_url and (self._quota is None or self._store is None):
            self._redis = connect_redis(cfg.redis_url)
        if self._quota is None:
            self._quota = RedisQuota(self._redis) if self._redis is not None else MemoryQuota()
        if self._store is None:
            self._store = (
                RedisCertStore(self._redis)
                if self._redis is not None
                else SqliteCertStore(pki / "certs.sqlite")
            )
        try:
            self._ca = DeviceCA.load(pki)
        except PkiError:
            self._ca = None  # no CA key here: renewals answer renewal_unavailable
        ctx = server_ssl_context(
            pki / "ca.crt",
            Path(cfg.server_cert) if cfg.server_cert else pki / "server.crt",
            Path(cfg.server_key) if cfg.server_key else pki / "server.key",
        )
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=cfg.upstream_connections, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=cfg.upstream_timeout_s),
            auto_decompress=True,
            trust_env=False,
        )
        app = web.Application(
            client_max_size=cfg.max_body_bytes, handler_args={"max_field_size": 8190, "lingering_time": 1.0}
        )
        app.router.add_post(CHAT_PATH, self._chat)
        app.router.add_post(RENEW_PATH, self._renew)
        app.router.add_get("/openapi.json", self._openapi)
        app.router.add_get("/healthz", self._health)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        # keepalive_timeout also bounds a connection that trickles its request headers (slowloris)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, keepalive_timeout=cfg.idle_timeout_s
        )
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        handler_kwargs: dict[str, Any] = getattr(server, "_kwargs", {})

        def protocol() -> _TypedErrorHandler:
            return _TypedErrorHandler(server, loop=loop, **handler_kwargs)

        self._server = await loop.create_server(
            protocol,
            cfg.listen_host,
            cfg.listen_port,
            ssl=ctx,
            ssl_handshake_timeout=10.0,
            reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = asyncio.create_task(self._sweep_loop())
        log.info(
            "gateway_started", host=cfg.listen_host, port=self.port, replicas_shared=self._redis is not None
        )

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for task in list(self._bg):
            task.cancel()
        if self._server is not None:
            self._server.close()
        for conns in self._live.values():
            for t in list(conns):
                t.abort()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._server is not None:
            await self._server.wait_closed()
        if self._session is not None:
            await self._session.close()
        if self._quota is not None:
            await self._quota.close()
        if self._store is not None:
            await self._store.close()
        self.audit.close()
        if self._classifier_pool is not None:
            self._classifier_pool.shutdown(wait=False, cancel_futures=True)

    # ---- identity & revocation -------------------------------------------------------------------
    def _identity(self, request: web.Request) -> DeviceIdentity:
        transport = request.transport
        ident = self._idents.get(transport) if transport is not None else None
        if ident is None:
            if transport is None:
                raise GatewayError("device_unknown", "no TLS client identity")
            ident = identity_from_peercert(transport.get_extra_info("peercert"))
            if ident is None:
                raise GatewayError("device_unknown", "client certificate carries no edgebox box identity")
            self._idents[transport] = ident
            self._live.setdefault(ident.box_id, weakref.WeakSet()).add(transport)
        return ident

    async def _check_standing(self, ident: DeviceIdentity, request: web.Request) -> None:
        if time.time() >= ident.not_after:
            self._abort_later(request)
            raise GatewayError("certificate_expired", "client certificate has expired")
        if await self.store.is_revoked(ident.serial, ident.box_id):
            self._abort_later(request)
            raise GatewayError("certificate_revoked", "client certificate has been revoked")

    def _abort_later(self, request: web.Request) -> None:
        """Close the connection after the current (error) response is written."""
        request[_CLOSE_AFTER] = True

    def close_box_connections(self, box_id: str, *, spare: Any = None) -> int:
        """Abort every live connection of a box (except `spare`, closed after its current response)."""
        conns = self._live.pop(box_id, None)
        n = 0
        for t in list(conns or ()):
            if t is not spare and not t.is_closing():
                t.abort()
                n += 1
        return n

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.revocation_sweep_s)
            try:
                await self._sweep()
            except Exception as exc:  # the sweep must survive a store hiccup
                log.warning("revocation_sweep_failed", error=type(exc).__name__)

    async def _sweep(self) -> None:
        now = time.time()
        for box_id, conns in list(self._live.items()):
            live = [t for t in conns if not t.is_closing()]
            if not live:
                self._live.pop(box_id, None)
                continue
            for t in live:
                ident = self._idents.get(t)
                if ident is None:
                    continue
                if now >= ident.not_after or await self.store.is_revoked(ident.serial, box_id):
                    t.abort()
                    log.info("connection_closed_revoked", device=box_id, serial=ident.serial)

    async def revoke_for_anomaly(
        self, request: web.Request, ident: DeviceIdentity, verdict: AnomalyVerdict, trace_id: str
    ) -> None:
        await self.store.revoke_box(ident.box_id, "anomaly: " + verdict.explain())
        self._abort_later(request)
        closed = self.close_box_connections(ident.box_id, spare=request.transport)
        log.warning(
            "anomaly_revoked",
            alert=True,
            device=ident.box_id,
            serial=ident.serial,
            reason=verdict.reason,
            observed=verdict.observed,
            threshold=verdict.threshold,
            window_s=verdict.window_s,
            connections_closed=closed,
        )
        self.audit.record(
            event="revocation",
            device=ident.box_id,
            serial=ident.serial,
            trace_id=trace_id,
            decision="revoke",
            status=403,
            code=verdict.reason,
            explanation=verdict.explain(),
        )
        if self.cfg.anomaly.webhook_url:
            task = asyncio.create_task(self._post_webhook(ident, verdict, trace_id))
            self._bg.add(task)
            task.add_done_callback(self._bg.discard)

    async def _post_webhook(self, ident: DeviceIdentity, verdict: AnomalyVerdict, trace_id: str) -> None:
        assert self._session is not None and self.cfg.anomaly.webhook_url
        payload = {
            "event": "edgebox.anomaly_revoked",
            "device": ident.box_id,
            "serial": ident.serial,
            "trace_id": trace_id,
            "reason": verdict.reason,
            "explanation": verdict.explain(),
        }
        try:
            async with self._session.post(
                self.cfg.anomaly.webhook_url, json=payload, timeout=aiohttp.ClientTimeout(total=5)
            ) as resp:
                if resp.status >= 300:
                    log.warning("alert_webhook_failed", status=resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("alert_webhook_failed", error=type(exc).__name__)

    async def _anomaly(
        self, request: web.Request, verdict: AnomalyVerdict | None, ident: DeviceIdentity, trace_id: str
    ) -> None:
        if verdict is not None:
            await self.revoke_for_anomaly(request, ident, verdict, trace_id)

    # ---- handlers --------------------------------------------------------------------------------
    async def _health(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"}, headers={"Server": _SERVER_HEADER})

    async def _openapi(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(openapi_document(), headers={"Server": _SERVER_HEADER})

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        if request.path in KNOWN_PATHS:
            err = GatewayError("method_not_allowed", f"use {KNOWN_PATHS[request.path]} on this path")
            resp = self._error_response(err, None)
            resp.headers["Allow"] = KNOWN_PATHS[request.path]
            return resp
        return self._error_response(GatewayError("not_found", "no such endpoint"), None)

    def _error_response(
        self, err: GatewayError, traceparent: str | None, request: web.Request | None = None
    ) -> web.Response:
        headers = err.headers()
        headers["Server"] = _SERVER_HEADER
        if traceparent:
            headers["traceparent"] = traceparent
        resp = web.Response(
            status=err.status, body=error_body(err), content_type="application/json", headers=headers
        )
        if request is not None and request.get(_CLOSE_AFTER):
            resp.force_close()
        return resp

    async def _read_body(self, request: web.Request, limit: int) -> bytes:
        ctype = request.content_type
        if (
            request.body_exists
            and ctype not in ("application/json", "application/octet-stream")
            and request.path == CHAT_PATH
        ):
            raise GatewayError("unsupported_media_type", "send the body as application/json")
        if request.content_length is not None and request.content_length > limit:
            if request.content_length <= DRAIN_FACTOR * limit:
                await self._drain(request)  # a modest excess: discard it and keep the connection usable
            else:
                self._abort_later(request)
            raise GatewayError("body_too_large", f"body larger than {limit} bytes")
        try:
            async with asyncio.timeout(self.cfg.body_timeout_s):
                chunks: list[bytes] = []
                size = 0
                while chunk := await request.content.read(65536):
                    size += len(chunk)
                    if size > limit:
                        self._abort_later(request)
                        raise GatewayError("body_too_large", f"body larger than {limit} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            self._abort_later(request)
            raise GatewayError("body_timeout", "request body not received in time") from None
        except (
            ConnectionResetError,
            aiohttp.ClientPayloadError,
            aiohttp.http_exceptions.HttpProcessingError,
        ):
            self._abort_later(request)
            raise GatewayError("body_incomplete", "the request body was cut short or malformed") from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _drain(self, request: web.Request) -> None:
        try:
            async with asyncio.timeout(self.cfg.body_timeout_s):
                while await request.content.read(65536):
                    pass
        except TimeoutError:
            self._abort_later(request)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        tp_in = trace.parse(request.headers.get("traceparent"))
        tp = tp_in or trace.new()
        echo = tp.format()
        out = _Outcome()
        ident: DeviceIdentity | None = None
        structlog.contextvars.bind_contextvars(trace_id=tp.trace_id)
        try:
            ident = self._identity(request)
            structlog.contextvars.bind_contextvars(device=ident.box_id)
            return await self._chat_checked(request, ident, tp, echo, out)
        except GatewayError as err:
            if ident is not None:
                self.audit.record(
                    event="request",
                    device=ident.box_id,
                    serial=ident.serial,
                    trace_id=tp.trace_id,
                    decision=out.decision,
                    status=err.status,
                    code=err.code,
                    model=out.model,
                    stream=out.stream,
                    score=out.score,
                    estimate_tokens=out.estimate,
                )
            return self._error_response(err, echo, request)
        except Exception as exc:
            return self._internal_error(exc, echo, ident, tp.trace_id)
        finally:
            structlog.contextvars.clear_contextvars()

    def _internal_error(
        self, exc: Exception, echo: str, ident: DeviceIdentity | None, trace_id: str
    ) -> web.StreamResponse:
        import redis.exceptions

        if isinstance(exc, redis.exceptions.RedisError):
            err = GatewayError("backend_unavailable", "the shared quota/revocation store is unavailable")
        else:
            err = GatewayError("internal_error", f"internal error (trace id {trace_id})")
        # the exception *type* only: its text could quote request data
        log.error("request_failed", error=type(exc).__name__, code=err.code)
        if ident is not None:
            self.audit.record(
                event="request",
                device=ident.box_id,
                serial=ident.serial,
                trace_id=trace_id,
                decision="error",
                status=err.status,
                code=err.code,
            )
        return self._error_response(err, echo)

    async def _chat_checked(
        self, request: web.Request, ident: DeviceIdentity, tp: trace.TraceParent, echo: str, out: _Outcome
    ) -> web.StreamResponse:
        await self._check_standing(ident, request)
        try:
            body = await self._read_body(request, self.cfg.max_body_bytes)
            req = decode_request(body)
        except (GatewayError, RequestInvalid) as exc:
            await self._anomaly(
                request, self.anomaly.observe_validation_failure(ident.box_id), ident, tp.trace_id
            )
            if isinstance(exc, RequestInvalid):
                raise GatewayError(exc.code, str(exc), param=exc.path) from None
            raise
        out.model = req.model
        out.stream = req.stream
        messages = req.messages
        digest = (
            self.anomaly.prompt_digest(msgspec.json.encode(messages)) if self.cfg.anomaly.enabled else None
        )
        verdict = self.anomaly.observe_request(ident.box_id, digest)
        if verdict is not None:
            await self.revoke_for_anomaly(request, ident, verdict, tp.trace_id)
            raise GatewayError("certificate_revoked", "client certificate has been revoked")

        texts = [m.content for m in messages]
        if self._classifier_pool is None:
            scores = self.classifier.score(texts)
        else:
            loop = asyncio.get_running_loop()
            scores = await loop.run_in_executor(self._classifier_pool, self.classifier.score, texts)
        out.score = score = max(scores) if scores else 0.0
        decision = self.policy.decide(score)
        if decision is Decision.block:
            out.decision = "block"
            await self._anomaly(
                request, self.anomaly.observe_blocked_injection(ident.box_id), ident, tp.trace_id
            )
            raise GatewayError("prompt_blocked", "the prompt was blocked by the injection policy")

        cap = completion_cap(req)
        if cap is None:
            cap = self.cfg.default_max_tokens
            req = msgspec.structs.replace(req, max_tokens=cap)
        out.estimate = estimate = estimate_tokens(
            total_content_chars(messages), len(messages), cap * (req.n or 1)
        )
        client_wants_usage = req.stream_options is not None and req.stream_options.include_usage
        if req.stream and not client_wants_usage:
            req = msgspec.structs.replace(req, stream_options=StreamOptions(include_usage=True))
        try:
            reservation = await self.quota.reserve(ident.box_id, estimate, self.quota_limit)
        except QuotaExceeded as exc:
            out.decision = "quota"
            raise GatewayError("quota_exceeded", str(exc), retry_after=exc.retry_after) from None
        except QuotaRequestTooLarge as exc:
            out.decision = "quota"
            raise GatewayError(exc.code, str(exc), param="$.max_tokens") from None
        out.decision = decision.value
        return await self._forward(request, req, reservation, ident, tp, echo, out, client_wants_usage)

    async def _forward(
        self,
        request: web.Request,
        req: ChatCompletionRequest,
        reservation: Reservation,
        ident: DeviceIdentity,
        tp: trace.TraceParent,
        echo: str,
        out: _Outcome,
        client_wants_usage: bool,
    ) -> web.StreamResponse:
        assert self._session is not None
        headers = {"Content-Type": "application/json", "traceparent": tp.child().format()}
        if self._key is not None:
            headers["Authorization"] = self._key.authorization()
        charged: int | None = None  # None = keep the estimate (usage unknown)
        try:
            try:
                upstream = await self._session.post(
                    self._upstream_url, data=encode_request(req), headers=headers
                )
            except TimeoutError:  # first: TimeoutError is an OSError; the upstream may have done the work
                log.warning("upstream_timeout")
                raise GatewayError("upstream_timeout", "the upstream did not answer in time") from None
            except (aiohttp.ClientConnectionError, OSError) as exc:
                charged = 0
                log.warning("upstream_unavailable", error=type(exc).__name__)
                raise GatewayError("upstream_unavailable", "the upstream could not be reached") from None
            async with upstream:
                if upstream.status != 200:
                    charged = 0
                    log.warning("upstream_status", status=upstream.status)
                    if upstream.status == 429:
                        raise GatewayError(
                            "upstream_busy", "the upstream is rate limiting; retry later", retry_after=5
                        )
                    raise GatewayError(
                        "upstream_error", f"the upstream answered with status {upstream.status}"
                    )
                if req.stream:
                    resp, usage = await self._relay_stream(request, upstream, echo, client_wants_usage)
                else:
                    resp, usage = await self._relay_json(upstream, echo)
            if usage is not None:
                out.prompt_tokens = usage.prompt_tokens
                out.completion_tokens = usage.completion_tokens
                charged = usage.total
            self.audit.record(
                event="request",
                device=ident.box_id,
                serial=ident.serial,
                trace_id=tp.trace_id,
                decision=out.decision,
                status=200,
                model=out.model,
                stream=out.stream,
                score=out.score,
                estimate_tokens=out.estimate,
                prompt_tokens=out.prompt_tokens,
                completion_tokens=out.completion_tokens,
            )
            return resp
        finally:
            if charged is not None:
                try:
                    await self.quota.reconcile(reservation, charged, self.quota_limit)
                except Exception as exc:  # the reservation stays charged at the estimate
                    log.warning("quota_reconcile_failed", error=type(exc).__name__)

    async def _relay_json(
        self, upstream: aiohttp.ClientResponse, echo: str
    ) -> tuple[web.StreamResponse, Usage | None]:
        if upstream.content_length is not None and upstream.content_length > MAX_UPSTREAM_BODY:
            raise GatewayError("upstream_error", "the upstream answer is too large")
        parts: list[bytes] = []
        size = 0
        try:
            # the cap holds for chunked answers too: counted as it is read, never buffered past it
            async for part in upstream.content.iter_any():
                size += len(part)
                if size > MAX_UPSTREAM_BODY:
                    raise GatewayError("upstream_error", "the upstream answer is too large")
                parts.append(part)
        except TimeoutError:
            log.warning("upstream_timeout")
            raise GatewayError("upstream_timeout", "the upstream did not answer in time") from None
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("upstream_body_broken", error=type(exc).__name__)
            raise GatewayError("upstream_error", "the upstream answer was cut short") from None
        data = b"".join(parts)
        try:
            usage = USAGE_DECODER.decode(data).usage
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise GatewayError("upstream_error", "the upstream answer was not valid JSON") from None
        resp = web.Response(
            body=data,
            content_type="application/json",
            headers={"traceparent": echo, "Server": _SERVER_HEADER},
        )
        return resp, usage

    async def _relay_stream(
        self, request: web.Request, upstream: aiohttp.ClientResponse, echo: str, client_wants_usage: bool
    ) -> tuple[web.StreamResponse, Usage | None]:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "traceparent": echo,
                "Server": _SERVER_HEADER,
            }
        )
        await resp.prepare(request)
        parser = SseParser(MAX_SSE_EVENT)
        relay = UsageFilter(client_wants_usage=client_wants_usage)
        try:
            try:
                async for chunk in upstream.content.iter_any():
                    forward = [b for ev in parser.feed(chunk) if (b := relay.forward(ev)) is not None]
                    if forward:
                        await resp.write(b"".join(forward))
                tail = [b for ev in parser.close() if (b := relay.forward(ev)) is not None]
                if tail:
                    await resp.write(b"".join(tail))
            except SseError as exc:
                log.warning("upstream_stream_broken", error=exc.code)
            await resp.write_eof()
        except (ConnectionResetError, ConnectionAbortedError):
            log.info("client_disconnected_mid_stream")  # usage unknown: the estimate stays charged
            return resp, relay.usage
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("upstream_stream_broken", error=type(exc).__name__)
            with contextlib.suppress(ConnectionError):
                await resp.write_eof()
        return resp, relay.usage

    async def _renew(self, request: web.Request) -> web.StreamResponse:
        tp = trace.parse(request.headers.get("traceparent")) or trace.new()
        structlog.contextvars.bind_contextvars(trace_id=tp.trace_id)
        ident: DeviceIdentity | None = None
        try:
            ident = self._identity(request)
            await self._check_standing(ident, request)
            if self._ca is None:
                raise GatewayError("renewal_unavailable", "this gateway cannot sign certificates")
            csr = await self._read_body(request, 8192)
            lifetime = dt.timedelta(hours=self.cfg.cert_lifetime_hours)
            try:
                issued = self._ca.issue_box(csr, ident.box_id, lifetime=lifetime)
            except CsrInvalid as exc:
                raise GatewayError("csr_invalid", str(exc)) from None
            await self.store.record_issued(issued.serial, issued.box_id, issued.not_after)
            self.audit.record(
                event="renewal",
                device=ident.box_id,
                serial=ident.serial,
                trace_id=tp.trace_id,
                decision="renew",
                status=200,
                explanation=f"new serial {issued.serial}",
            )
            log.info("certificate_renewed", device=ident.box_id, new_serial=issued.serial)
            return web.Response(
                body=issued.pem,
                content_type="application/x-pem-file",
                headers={"traceparent": tp.format(), "Server": _SERVER_HEADER},
            )
        except GatewayError as err:
            if ident is not None:
                self.audit.record(
                    event="renewal",
                    device=ident.box_id,
                    serial=ident.serial,
                    trace_id=tp.trace_id,
                    decision="reject",
                    status=err.status,
                    code=err.code,
                )
            return self._error_response(err, tp.format(), request)
        finally:
            structlog.contextvars.clear_contextvars()
