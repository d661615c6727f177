"""The gateway replica: the HTTP app that ties identity, admission, the upstream relay and audit together.

Theory of operation — one request, read top to bottom in `_middleware` and `chat`:
1. The TLS listener (edgebox.gateway.listener) bounds what an unauthenticated peer can hold: small TLS
   buffers, connection caps in total and per source address, a short handshake deadline. TLS 1.3 with
   an optional client certificate from the device CA (optional only so that `POST /v1/pki/enrol` can
   be reached by a box that has none yet; every other device route requires one).
2. One middleware for every route from the route table (edgebox.gateway.routes): it continues the
   caller's W3C trace in a server span (OpenTelemetry, edgebox.telemetry), reads the device identity
   from the certificate (edgebox.gateway.identity), checks its standing (expiry, revocation in the
   shared `CertStore`), runs the handler, turns every failure — typed or not — into a typed JSON error
   that honours close-after, and writes exactly one audit record and the metrics for the request.
3. `chat`: the phone's standing (`X-Edgebox-Phone`: suspended → 403 `phone_suspended`, throttled → 429
   `phone_throttled`), the body under a size cap and deadline, the `Idempotency-Key` claim in the
   shared state (a retry gets the stored outcome; the upstream sees a key at most once), then
   admission (edgebox.gateway.admission: decode → anomaly → classify → estimate → reserve), then the
   relay (edgebox.gateway.relay) in an upstream client span whose context is forwarded upstream, then
   reconciliation of the reservation with real usage.
4. Anomaly verdicts (edgebox.gateway.anomaly) throttle or suspend one phone, or revoke the box (shared
   store) and abort its live connections; each is audited and posted to the optional webhook.
5. `renew` / `enrol` ask the signer (edgebox.pki.signer) — the signing service in production; a replica
   configured with `signer_socket` never opens the CA key.
Device state (quotas, anomaly counters, phone standing, idempotency, revocations) lives in Redis when
`redis_url` is set (one server or a cluster), so no replica holds state another one needs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import datetime as dt
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import structlog
from aiohttp import web, web_protocol

from edgebox.errors import ConfigError, EdgeboxError
from edgebox.gateway.admission import Admission, Outcome
from edgebox.gateway.anomaly import AnomalyVerdict, AnomalyWatch, Level
from edgebox.gateway.audit import AuditLog
from edgebox.gateway.classify import BatchingScorer
from edgebox.gateway.config import GatewayConfig
from edgebox.gateway.errors import GatewayError, error_body
from edgebox.gateway.identity import PHONE_HEADER, ConnectionTable, DeviceIdentity, phone_of
from edgebox.gateway.listener import ConnectionCounts, ListenerLimits, release_memory, serve_tls
from edgebox.gateway.metrics import GatewayMetrics
from edgebox.gateway.openapi import openapi_document
from edgebox.gateway.relay import SERVER_HEADER, Relayed, UpstreamRelay
from edgebox.gateway.routes import BY_PATH, CHAT_PATH, KNOWN_PATHS, ROUTES, Route
from edgebox.gateway.secret import UpstreamKey
from edgebox.gateway.state import PENDING, DeviceState, MemoryDeviceState, RedisDeviceState
from edgebox.log import get_logger
from edgebox.pipeline.classifier import Classifier
from edgebox.pipeline.quota import MemoryQuota, QuotaBackend, QuotaLimit, RedisQuota
from edgebox.pipeline.rules import RuleClassifier
from edgebox.pipeline.scorecache import CachedClassifier
from edgebox.pki.ca import CsrInvalid, DeviceCA, PkiError
from edgebox.pki.enrol import EnrolRequest, EnrolResponse, token_digest
from edgebox.pki.signer import LocalSigner, Signer, SignerClient, SignerUnavailable
from edgebox.pki.store import CertStore, RedisCertStore, SqliteCertStore
from edgebox.redisconn import connect
from edgebox.telemetry import SpanKind, Telemetry, TelemetryConfig, extract, span_ids, traceparent

log = get_logger("edgebox.gateway")

DRAIN_FACTOR = 4
MAX_CSR_BODY = 8192
STOP_UPSTREAM_GRACE_S = 5.0
IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEM_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_CTX = web.RequestKey("edgebox_ctx", object)
_REQUEST: contextvars.ContextVar[web.Request | None] = contextvars.ContextVar("edgebox_request", default=None)
# Re-exported for callers of the old single-module gateway.
__all__ = ["CHAT_PATH", "KNOWN_PATHS", "Gateway", "load_classifier", "server_ssl_context"]


def load_classifier(name: str) -> Classifier:
    """`model` (default: the trained classifier from `edgebox models build`) or `rules` (built in)."""
    if name == "rules":
        return RuleClassifier()
    if name == "model":
        try:
            from edgebox.models.injection import InjectionClassifier

            model: Classifier = InjectionClassifier()
        except EdgeboxError as exc:
            raise ConfigError(
                f"classifier 'model' unavailable [{exc.code}]: {exc} (run `make models`, or set "
                'classifier = "rules")'
            ) from None
        return model
    raise ConfigError(f"unknown classifier {name!r} (use 'model' or 'rules')")


def server_ssl_context(ca_cert: Path, server_cert: Path, server_key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    # optional at the TLS layer so that enrolment works without a certificate; a certificate that is
    # presented is still verified against the device CA, and device routes refuse requests without one
    ctx.verify_mode = ssl.CERT_OPTIONAL
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
        headers = err.headers()
        headers["Server"] = SERVER_HEADER
        resp = web.Response(
            status=err.status, body=error_body(err), content_type="application/json", headers=headers
        )
        resp.force_close()
        return resp


class _Ctx:
    """What the middleware and the handler learn about one request."""

    __slots__ = ("close_after", "explanation", "ident", "outcome", "replayed", "trace_id", "traceparent")

    def __init__(self, trace_id: str, tp: str) -> None:
        self.trace_id = trace_id
        self.traceparent = tp
        self.ident: DeviceIdentity | None = None
        self.outcome = Outcome()
        self.close_after = False
        self.explanation: str | None = None
        self.replayed = False


def _ctx(request: web.Request) -> _Ctx:
    c = request[_CTX]
    assert isinstance(c, _Ctx)
    return c


class _Stored(msgspec.Struct, array_like=True):
    """An idempotent request's outcome as stored in the shared state."""

    body_digest: bytes
    status: int
    content_type: str
    body: bytes


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
        state: DeviceState | None = None,
        anomaly_clock: Callable[[], float] | None = None,
        telemetry: Telemetry | None = None,
        signer: Signer | None = None,
    ) -> None:
        self.cfg = cfg
        self._key = upstream_key
        chosen = classifier or load_classifier(cfg.classifier)
        # The rule classifier is microseconds (and memoises itself): inline. Anything else (the trained
        # model) gets a score memo and runs batched on a thread pool, off the event loop.
        self._classifier_pool: concurrent.futures.ThreadPoolExecutor | None = None
        if isinstance(chosen, RuleClassifier):
            self.classifier: Classifier = chosen
        else:
            self.classifier = CachedClassifier(chosen)
            self._classifier_pool = concurrent.futures.ThreadPoolExecutor(
                cfg.classifier_threads, thread_name_prefix="classifier"
            )
        self.metrics = GatewayMetrics()
        self.scorer = BatchingScorer(
            self.classifier, self._classifier_pool, self.metrics.classifier_seconds.observe
        )
        self.quota_limit = QuotaLimit(
            cfg.quota_tokens,
            cfg.quota_window_s,
            max_inflight=cfg.quota_max_inflight,
            inflight_ttl_s=cfg.upstream_timeout_s + 60,
        )
        self._quota = quota
        self._store = store
        self._state = (
            state if state is not None else (MemoryDeviceState(anomaly_clock) if anomaly_clock else None)
        )
        self._signer = signer
        self._redis: Any = None
        self.telemetry = telemetry or Telemetry.create(
            TelemetryConfig(service_name="edgebox-gateway", otlp_endpoint=cfg.telemetry.otlp_endpoint)
        )
        self._own_telemetry = telemetry is None
        self.audit = AuditLog(cfg.audit_file)
        self.connections = ConnectionTable()
        self.counts = ConnectionCounts()
        self.anomaly: AnomalyWatch = AnomalyWatch(cfg.anomaly, self._state)
        self.admission: Admission | None = None
        self._relay: UpstreamRelay | None = None
        self._session: aiohttp.ClientSession | None = None
        self._server: asyncio.Server | None = None
        self._runner: web.AppRunner | None = None
        self._metrics_runner: web.AppRunner | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._bg: set[asyncio.Task[Any]] = set()
        self._tripped: set[str] = set()
        self._trim_mark = 0
        self.port = 0
        self.metrics_port = 0

    # ---- lifecycle -------------------------------------------------------------------------------
    @property
    def quota(self) -> QuotaBackend:
        assert self._quota is not None
        return self._quota

    @property
    def store(self) -> CertStore:
        assert self._store is not None
        return self._store

    @property
    def state(self) -> DeviceState:
        return self.anomaly.state

    def _open_signer(self, pki: Path) -> Signer | None:
        if self._signer is not None:
            return self._signer
        if self.cfg.signer_socket:
            return SignerClient(self.cfg.signer_socket)
        if (pki / "ca.key").exists():
            try:
                ca = DeviceCA.load(pki)
            except PkiError:
                return None
            log.warning(
                "ca_key_in_gateway", hint="production replicas set signer_socket (edgebox pki signer)"
            )
            return LocalSigner(ca)
        return None  # renewals and enrolments answer renewal_unavailable

    async def start(self) -> None:
        cfg = self.cfg
        pki = Path(cfg.pki_dir)
        if cfg.redis_url and (self._quota is None or self._store is None or self._state is None):
            self._redis = connect(cfg.redis_url)
        if self._quota is None:
            self._quota = RedisQuota(self._redis) if self._redis is not None else MemoryQuota()
        if self._store is None:
            self._store = (
                RedisCertStore(self._redis)
                if self._redis is not None
                else SqliteCertStore(pki / "certs.sqlite")
            )
        if self._state is None:
            self._state = RedisDeviceState(self._redis) if self._redis is not None else MemoryDeviceState()
            self.anomaly = AnomalyWatch(cfg.anomaly, self._state)
        await self.anomaly.start()
        self._signer = self._open_signer(pki)
        ctx = server_ssl_context(
            pki / "ca.crt",
            Path(cfg.server_cert) if cfg.server_cert else pki / "server.crt",
            Path(cfg.server_key) if cfg.server_key else pki / "server.key",
        )
        self._ca_pem = (pki / "ca.crt").read_bytes()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=cfg.upstream_connections, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=cfg.upstream_timeout_s),
            auto_decompress=True,
            trust_env=False,
        )
        self._relay = UpstreamRelay(self._session, cfg.upstream_url, self._key)
        self.admission = Admission(
            anomaly=self.anomaly,
            score=self.scorer.score,
            policy=self._policy(),
            quota=lambda: self.quota,
            limit=self.quota_limit,
            default_max_tokens=cfg.default_max_tokens,
            telemetry=self.telemetry,
            on_verdict=self._on_verdict,
            on_score=lambda s, d: self.metrics.classifier_decisions.labels(d.value).inc(),
        )
        app = web.Application(
            client_max_size=cfg.max_body_bytes,
            handler_args={"max_field_size": 8190, "lingering_time": 1.0},
            middlewares=[self._middleware],
        )
        for route in ROUTES:
            app.router.add_route(route.method, route.path, getattr(self, route.handler))
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

        limits = ListenerLimits(cfg.max_connections, cfg.max_connections_per_source, cfg.handshake_timeout_s)
        self._server = await serve_tls(protocol, cfg.listen_host, cfg.listen_port, ctx, limits, self.counts)
        self.port = self._server.sockets[0].getsockname()[1]
        if cfg.metrics_port is not None:
            mapp = web.Application()
            mapp.router.add_get("/metrics", self._metrics)
            self._metrics_runner = web.AppRunner(mapp, access_log=None, handle_signals=False)
            await self._metrics_runner.setup()
            site = web.TCPSite(self._metrics_runner, cfg.metrics_host, cfg.metrics_port)
            await site.start()
            self.metrics_port = self._metrics_runner.addresses[0][1]
        self._sweeper = asyncio.create_task(self._sweep_loop())
        log.info(
            "gateway_started", host=cfg.listen_host, port=self.port, replicas_shared=self._redis is not None
        )

    def _policy(self) -> Any:
        from edgebox.pipeline.classifier import InjectionPolicy

        return InjectionPolicy(self.cfg.injection_flag_threshold, self.cfg.injection_block_threshold)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for task in list(self._bg):
            task.cancel()
        if self._server is not None:
            self._server.close()
        self.connections.abort_all()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        if self._server is not None:
            await self._server.wait_closed()
        if self._session is not None:
            # Closing waits for every upstream transport's connection_lost; one whose peer stopped
            # reading can hold that wait for ever. Shutdown is bounded: after the grace period the
            # remaining transports are dropped with the loop's other resources.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._session.close(), STOP_UPSTREAM_GRACE_S)
        if self._signer is not None:
            await self._signer.close()
        if self._quota is not None:
            await self._quota.close()
        if self._store is not None:
            await self._store.close()
        if self._state is not None and self._redis is None:
            await self._state.close()
        self.audit.close()
        if self._classifier_pool is not None:
            self._classifier_pool.shutdown(wait=False, cancel_futures=True)
        if self._own_telemetry:
            self.telemetry.shutdown()

    # ---- revocation and the sweep ----------------------------------------------------------------
    def close_box_connections(self, box_id: str, *, spare: Any = None) -> int:
        return self.connections.close_box(box_id, spare=spare)

    async def _sweep_loop(self) -> None:
        me = asyncio.current_task()
        while True:
            await asyncio.sleep(self.cfg.revocation_sweep_s)
            try:
                await self._sweep()
            except Exception as exc:  # the sweep must survive a store hiccup
                log.warning("revocation_sweep_failed", error=type(exc).__name__)
            if me is not None and me.cancelling():
                # a cancel that arrived inside a Redis call can be swallowed there (redis-py's
                # asyncio connection does); honour it here, or stop() waits for ever
                raise asyncio.CancelledError

    async def _sweep(self) -> None:
        await self.connections.sweep(self.store)
        for box in list(self._tripped):  # reinstated by an operator: watch it again from zero
            if not await self.store.is_revoked("", box):
                self._tripped.discard(box)
                # Only if nobody restarted the watch yet (`pki reinstate --redis` resets the shared
                # state itself): a reset here after that would wipe what the box did since.
                (tripped,) = await self.anomaly.state.flags(box, ["tripped"])
                if tripped is not None:
                    await self.anomaly.reset(box)
                    log.info("anomaly_watch_restarted", device=box)
        self.metrics.connections_open.set(self.counts.total)
        self.metrics.connections_refused.set(self.counts.refused)
        # a flood has drained: hand its freed memory back to the kernel (again on the next few sweeps:
        # the last closed connections' objects are freed a little later)
        if self.counts.high_water - self.counts.total >= 256:
            self._trim_mark = 5
            self.counts.high_water = self.counts.total
        if self._trim_mark > 0:
            self._trim_mark -= 1
            release_memory()

    async def _on_verdict(self, ident: DeviceIdentity, verdict: AnomalyVerdict) -> None:
        """Act on an anomaly verdict (one replica per verdict: the one whose shared flag won)."""
        self.metrics.anomaly_verdicts.labels(verdict.level.value, verdict.reason).inc()
        closed = 0
        if verdict.level is Level.revoke_box:
            current = _REQUEST.get()
            if current is not None:  # the request that tripped it gets its answer, then the close
                _ctx(current).close_after = True
            await self.store.revoke_box(ident.box_id, "anomaly: " + verdict.explain())
            self._tripped.add(ident.box_id)
            closed = self.close_box_connections(ident.box_id, spare=current.transport if current else None)
        trace_id = _current_trace_id()
        names = {
            Level.revoke_box: ("anomaly_revoked", "revocation", "revoke"),
            Level.suspend_phone: ("anomaly_phone_suspended", "anomaly", "suspend_phone"),
            Level.throttle_phone: ("anomaly_phone_throttled", "anomaly", "throttle_phone"),
        }
        log_event, audit_event, decision = names[verdict.level]
        log.warning(
            log_event,
            alert=True,
            device=ident.box_id,
            phone=verdict.phone,
            serial=ident.serial,
            reason=verdict.reason,
            observed=verdict.observed,
            threshold=verdict.threshold,
            window_s=verdict.window_s,
            connections_closed=closed,
        )
        self.audit.record(
            event=audit_event,
            device=ident.box_id,
            phone=verdict.phone,
            serial=ident.serial,
            trace_id=trace_id,
            decision=decision,
            status=403 if verdict.level is not Level.throttle_phone else 429,
            code=verdict.reason,
            explanation=verdict.explain(),
        )
        if self.cfg.anomaly.webhook_url:
            task = asyncio.create_task(self._post_webhook(ident, verdict, trace_id))
            self._bg.add(task)
            task.add_done_callback(self._bg.discard)

    async def _post_webhook(self, ident: DeviceIdentity, verdict: AnomalyVerdict, trace_id: str) -> None:
        assert self._session is not None and self.cfg.anomaly.webhook_url
        event = {
            Level.revoke_box: "edgebox.anomaly_revoked",
            Level.suspend_phone: "edgebox.phone_suspended",
            Level.throttle_phone: "edgebox.phone_throttled",
        }[verdict.level]
        payload = {
            "event": event,
            "level": verdict.level.value,
            "device": ident.box_id,
            "phone": verdict.phone,
            "serial": ident.serial,
            "trace_id": trace_id,
            "reason": verdict.reason,
            "observed": verdict.observed,
            "threshold": verdict.threshold,
            "window_s": verdict.window_s,
            "explanation": verdict.explain(),
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        try:
            async with self._session.post(
                self.cfg.anomaly.webhook_url, json=payload, timeout=aiohttp.ClientTimeout(total=5)
            ) as resp:
                if resp.status >= 300:
                    log.warning("alert_webhook_failed", status=resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("alert_webhook_failed", error=type(exc).__name__)

    # ---- the one middleware ----------------------------------------------------------------------
    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        route = BY_PATH.get((request.method, request.path))
        if route is None:
            return await handler(request)
        started = time.perf_counter()
        with self.telemetry.span(
            f"{route.method} {route.path}",
            parent=extract(request.headers),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": route.method, "url.path": route.path},
        ) as span:
            trace_id, _ = span_ids(span)
            c = _Ctx(trace_id, traceparent(span))
            request[_CTX] = c
            _REQUEST.set(request)
            structlog.contextvars.bind_contextvars(trace_id=trace_id)
            status = 500
            code: str | None = None
            try:
                if route.auth == "device":
                    c.ident = self.connections.identify(request.transport)
                    structlog.contextvars.bind_contextvars(device=c.ident.box_id)
                    span.set_attribute("edgebox.device", c.ident.box_id)
                    await self._check_standing(c)
                resp = await handler(request)
                status = resp.status
            except GatewayError as err:
                status, code = err.status, err.code
                resp = self._error_response(err, c)
            except Exception as exc:
                internal = self._internal(exc, trace_id)
                status, code = internal.status, internal.code
                resp = self._error_response(internal, c)
            finally:
                structlog.contextvars.clear_contextvars()
            span.set_attribute("http.response.status_code", status)
            if code:
                span.set_attribute("edgebox.code", code)
            self._record(route, c, status, code)
            self.metrics.requests.labels(route.path, str(status)).inc()
            if code:
                self.metrics.refusals.labels(code).inc()
            span.set_attribute("edgebox.gateway_ms", round((time.perf_counter() - started) * 1000, 3))
            return resp

    def _internal(self, exc: Exception, trace_id: str) -> GatewayError:
        import redis.exceptions

        if isinstance(exc, redis.exceptions.RedisError | SignerUnavailable):
            err = GatewayError(
                "backend_unavailable", "a shared store or the signing service is unavailable", retry_after=2
            )
        else:
            err = GatewayError("internal_error", f"internal error (trace id {trace_id})")
        # the exception *type* only: its text could quote request data
        log.error("request_failed", error=type(exc).__name__, code=err.code)
        return err

    def _record(self, route: Route, c: _Ctx, status: int, code: str | None) -> None:
        if route.audit_event is None:
            return
        if c.ident is None and route.auth == "device":
            return  # no identity: nothing to attribute the record to (logged as a refusal)
        o = c.outcome
        if status >= 400 and o.decision not in ("block", "quota"):
            o.decision = "error" if status >= 500 else "reject"
        self.audit.record(
            event=route.audit_event,
            device=c.ident.box_id if c.ident else (c.explanation or ""),
            serial=c.ident.serial if c.ident else "",
            phone=o.phone,
            trace_id=c.trace_id,
            decision="replay" if c.replayed else o.decision,
            status=status,
            code=code,
            model=o.model,
            stream=o.stream,
            score=o.score,
            estimate_tokens=o.estimate,
            prompt_tokens=o.prompt_tokens,
            completion_tokens=o.completion_tokens,
            explanation=c.explanation if c.ident else None,
        )

    async def _check_standing(self, c: _Ctx) -> None:
        ident = c.ident
        assert ident is not None
        if time.time() >= ident.not_after:
            c.close_after = True
            raise GatewayError("certificate_expired", "client certificate has expired")
        if await self.store.is_revoked(ident.serial, ident.box_id):
            c.close_after = True
            raise GatewayError("certificate_revoked", "client certificate has been revoked")

    def _error_response(self, err: GatewayError, c: _Ctx | None) -> web.Response:
        headers = err.headers()
        headers["Server"] = SERVER_HEADER
        if c is not None:
            headers["traceparent"] = c.traceparent
        resp = web.Response(
            status=err.status, body=error_body(err), content_type="application/json", headers=headers
        )
        if c is not None and c.close_after:
            resp.force_close()
        return resp

    def _headers(self, c: _Ctx) -> dict[str, str]:
        return {"traceparent": c.traceparent, "Server": SERVER_HEADER}

    # ---- body reading ----------------------------------------------------------------------------
    async def _read_body(self, request: web.Request, limit: int, c: _Ctx, *, json_only: bool) -> bytes:
        ctype = request.content_type
        if (
            json_only
            and request.body_exists
            and ctype not in ("application/json", "application/octet-stream")
        ):
            raise GatewayError("unsupported_media_type", "send the body as application/json")
        if request.content_length is not None and request.content_length > limit:
            if request.content_length <= DRAIN_FACTOR * limit:
                await self._drain(request, c)  # a modest excess: discard it and keep the connection usable
            else:
                c.close_after = True
            raise GatewayError("body_too_large", f"body larger than {limit} bytes")
        try:
            async with asyncio.timeout(self.cfg.body_timeout_s):
                chunks: list[bytes] = []
                size = 0
                while chunk := await request.content.read(65536):
                    size += len(chunk)
                    if size > limit:
                        c.close_after = True
                        raise GatewayError("body_too_large", f"body larger than {limit} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            c.close_after = True
            raise GatewayError("body_timeout", "request body not received in time") from None
        except (
            ConnectionResetError,
            aiohttp.ClientPayloadError,
            aiohttp.http_exceptions.HttpProcessingError,
        ):
            c.close_after = True
            raise GatewayError("body_incomplete", "the request body was cut short or malformed") from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _drain(self, request: web.Request, c: _Ctx) -> None:
        try:
            async with asyncio.timeout(self.cfg.body_timeout_s):
                while await request.content.read(65536):
                    pass
        except TimeoutError:
            c.close_after = True

    # ---- handlers --------------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"}, headers={"Server": SERVER_HEADER})

    async def openapi(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(openapi_document(), headers={"Server": SERVER_HEADER})

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        self.metrics.connections_open.set(self.counts.total)
        self.metrics.connections_refused.set(self.counts.refused)
        return await self.metrics.handle(request)

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        if request.path in KNOWN_PATHS:
            err = GatewayError("method_not_allowed", f"use {KNOWN_PATHS[request.path]} on this path")
            resp = self._error_response(err, None)
            resp.headers["Allow"] = KNOWN_PATHS[request.path]
            return resp
        return self._error_response(GatewayError("not_found", "no such endpoint"), None)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        c = _ctx(request)
        ident = c.ident
        assert ident is not None and self.admission is not None
        phone = phone_of(request.headers.get(PHONE_HEADER))
        c.outcome.phone = phone
        standing = await self.anomaly.standing(ident.box_id, phone)
        if standing.suspended:
            raise GatewayError("phone_suspended", "this phone is suspended; the box should drop it")
        if standing.throttled_for_s is not None:
            raise GatewayError(
                "phone_throttled",
                "this phone is throttled; retry later",
                retry_after=standing.throttled_for_s,
            )
        idem = request.headers.get(IDEMPOTENCY_HEADER)
        if idem is not None and not _IDEM_KEY.fullmatch(idem):
            raise GatewayError(
                "invalid_request",
                f"{IDEMPOTENCY_HEADER} must be 1-128 of A-Z a-z 0-9 . _ : -",
                param=IDEMPOTENCY_HEADER,
            )
        try:
            body = await self._read_body(request, self.cfg.max_body_bytes, c, json_only=True)
        except GatewayError:
            await self._observe_failure(ident, phone)
            raise
        if idem is not None:
            replay = await self._idem_claim(ident, idem, body, c)
            if replay is not None:
                return replay
        forwarded = Relayed()
        try:
            return await self._admit_and_forward(request, c, ident, body, forwarded, idem is not None)
        finally:
            if idem is not None:
                await self._idem_settle(ident, idem, body, forwarded)

    async def _observe_failure(self, ident: DeviceIdentity, phone: str | None) -> None:
        verdict = await self.anomaly.observe_validation_failure(ident.box_id, phone)
        if verdict is not None:
            await self._on_verdict(ident, verdict)

    async def _admit_and_forward(
        self, request: web.Request, c: _Ctx, ident: DeviceIdentity, body: bytes, out: Relayed, capture: bool
    ) -> web.StreamResponse:
        assert self.admission is not None and self._relay is not None
        try:
            admitted = await self.admission.admit(body, ident, c.outcome.phone, c.outcome)
        except GatewayError as err:
            if err.code == "certificate_revoked":
                c.close_after = True
            if err.code == "quota_exceeded":
                self.metrics.quota_rejections.inc()
            raise
        o = c.outcome
        self.metrics.tokens_estimated.inc(admitted.plan.estimate)
        t0 = time.perf_counter()
        try:
            with self.telemetry.span("gateway.upstream", kind=SpanKind.CLIENT) as span:
                await self._relay.forward(
                    request,
                    admitted.plan.request,
                    self._headers(c),
                    upstream_traceparent=traceparent(span),
                    client_wants_usage=admitted.plan.client_wants_usage,
                    capture=capture,
                    out=out,
                )
                if out.usage is not None:
                    o.prompt_tokens = out.usage.prompt_tokens
                    o.completion_tokens = out.usage.completion_tokens
                    span.set_attribute("gen_ai.usage.input_tokens", out.usage.prompt_tokens)
                    span.set_attribute("gen_ai.usage.output_tokens", out.usage.completion_tokens)
            assert out.response is not None
            return out.response
        finally:
            self.metrics.upstream_seconds.observe(time.perf_counter() - t0)
            if out.charged is not None:
                self.metrics.tokens_charged.inc(out.charged)
                try:
                    await self.quota.reconcile(admitted.reservation, out.charged, self.quota_limit)
                except Exception as exc:  # the reservation stays charged at the estimate
                    log.warning("quota_reconcile_failed", error=type(exc).__name__)
            else:
                # usage unknown: the estimate stays charged, the in-flight slot is freed
                try:
                    await self.quota.reconcile(
                        admitted.reservation, admitted.reservation.estimate, self.quota_limit
                    )
                except Exception as exc:
                    log.warning("quota_reconcile_failed", error=type(exc).__name__)

    # ---- idempotency -----------------------------------------------------------------------------
    def _body_digest(self, body: bytes) -> bytes:
        import hashlib

        return hashlib.blake2b(body, digest_size=16).digest()

    async def _idem_claim(self, ident: DeviceIdentity, key: str, body: bytes, c: _Ctx) -> web.Response | None:
        stored = await self.state.idem_begin(ident.box_id, key, self.cfg.idempotency_ttl_s)
        if stored is None:
            return None
        if stored == PENDING:
            raise GatewayError(
                "idempotency_in_progress", "a request with this Idempotency-Key is in flight", retry_after=1
            )
        try:
            outcome = msgspec.msgpack.decode(stored, type=_Stored)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise GatewayError("internal_error", "stored outcome unreadable") from None
        if outcome.body_digest != self._body_digest(body):
            raise GatewayError(
                "invalid_request",
                f"{IDEMPOTENCY_HEADER} was used with a different body",
                param=IDEMPOTENCY_HEADER,
            )
        c.replayed = True
        headers = self._headers(c)
        headers["Idempotent-Replayed"] = "true"
        if outcome.status >= 400:
            headers["x-should-retry"] = "false"
        return web.Response(
            status=outcome.status, body=outcome.body, content_type=outcome.content_type, headers=headers
        )

    async def _idem_settle(self, ident: DeviceIdentity, key: str, body: bytes, out: Relayed) -> None:
        try:
            if not out.forwarded or out.charged == 0:
                # never reached the upstream, or the upstream certainly did nothing: a retry may forward
                await self.state.idem_release(ident.box_id, key)
                return
            if out.response is not None and out.response.status == 200 and out.captured is not None:
                ctype = out.response.content_type or "application/json"
                data = b"".join(out.captured)
                stored = _Stored(self._body_digest(body), 200, ctype, data)
            else:
                err = GatewayError(
                    "upstream_error", "the original request reached the upstream but its answer was lost"
                )
                stored = _Stored(self._body_digest(body), err.status, "application/json", error_body(err))
            await self.state.idem_finish(
                ident.box_id, key, msgspec.msgpack.encode(stored), self.cfg.idempotency_ttl_s
            )
        except Exception as exc:
            log.warning("idempotency_store_failed", error=type(exc).__name__)

    # ---- certificates ----------------------------------------------------------------------------
    async def renew(self, request: web.Request) -> web.StreamResponse:
        c = _ctx(request)
        ident = c.ident
        assert ident is not None
        c.outcome.decision = "renew"
        if self._signer is None:
            raise GatewayError("renewal_unavailable", "this gateway cannot sign certificates")
        csr = await self._read_body(request, MAX_CSR_BODY, c, json_only=False)
        lifetime = dt.timedelta(hours=self.cfg.cert_lifetime_hours)
        try:
            issued = await self._signer.sign(csr, ident.box_id, lifetime)
        except CsrInvalid as exc:
            raise GatewayError("csr_invalid", str(exc)) from None
        await self.store.record_issued(issued.serial, issued.box_id, issued.not_after)
        c.explanation = f"new serial {issued.serial}"
        log.info("certificate_renewed", device=ident.box_id, new_serial=issued.serial)
        return web.Response(body=issued.pem, content_type="application/x-pem-file", headers=self._headers(c))

    async def enrol(self, request: web.Request) -> web.StreamResponse:
        c = _ctx(request)
        c.outcome.decision = "enrol"
        body = await self._read_body(request, 16 * 1024, c, json_only=True)
        try:
            req = msgspec.json.decode(body, type=EnrolRequest)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            raise GatewayError("invalid_request", 'the body must be {"token": str, "csr": PEM str}') from None
        if self._signer is None:
            raise GatewayError("renewal_unavailable", "this gateway cannot sign certificates")
        box_id = await self.store.take_enrol_token(token_digest(req.token))
        if box_id is None:
            c.explanation = "-"
            raise GatewayError("enrol_token_invalid", "the enrolment token is unknown, used or expired")
        c.explanation = box_id
        lifetime = dt.timedelta(hours=self.cfg.cert_lifetime_hours)
        try:
            issued = await self._signer.sign(req.csr.encode(), box_id, lifetime)
        except CsrInvalid as exc:
            raise GatewayError("csr_invalid", str(exc)) from None
        await self.store.record_issued(issued.serial, issued.box_id, issued.not_after)
        log.info("box_enrolled", device=box_id, serial=issued.serial)
        resp = EnrolResponse(
            certificate=issued.pem.decode(),
            chain=self._ca_pem.decode(),
            not_after=issued.not_after.astimezone(dt.UTC)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z"),
        )
        return web.Response(
            body=msgspec.json.encode(resp), content_type="application/json", headers=self._headers(c)
        )


def _current_trace_id() -> str:
    from opentelemetry import trace as otel_trace

    sc = otel_trace.get_current_span().get_span_context()
    return f"{sc.trace_id:032x}" if sc.is_valid else ""
