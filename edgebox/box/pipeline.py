"""The request pipeline on the box: every `prompt` from an authenticated phone, as one ordered chain.

Theory of operation — `BoxPipeline.respond(prompt, ctx)` is the `Responder` the session server
calls; it runs, in this order, the same pieces the gateway runs:

1. **standing** — a throttled or suspended phone is refused at once (`busy` + retry-after);
   every prompt also counts towards flood detection (box/standing.py);
2. **limits** — the strict schema and per-message limits were applied when the message was decoded
   (edgebox.pipeline.chat via session/messages.py); the total size is checked here;
3. **injection classifier** — the trained local model (edgebox.models via pipeline/classifier.py),
   one embedding pass shared with steps 5 and 6; `block` refuses with `injection_blocked`;
4. **quota** — per-phone sliding-window token quota (pipeline/quota.py, `MemoryQuota`): an upper-bound
   estimate is reserved now and reconciled with the real usage afterwards;
5. **semantic cache** — for a single-turn question, the nearest cached answer of the same model at
   cosine >= `[cache] threshold` (TTL `[cache] ttl_s`) is streamed back (`source="cache"`);
6. **branch documents** — if the best passages score >= `answer_threshold`, or the WAN is down and
   they score >= `offline_threshold`, a cited local answer (`source="local"`, marked as local);
7. **uplink** — otherwise the gateway. A request the phone marked `can_wait` is first written to the
   durable outbox and sent with its idempotency key; if the WAN is down it stays queued and the phone
   gets `done` with finish_reason "queued" (the answer follows when it next connects). An answer
   from the gateway for a single-turn question is cached.

Blocked prompts, quota refusals and floods are *strikes* against the phone; enough of them throttle
and then suspend it on the box. A gateway refusal `phone_suspended` suspends it on the box too.
Every decision is one prompt-log row keyed by `<trace id>-<box span id>` with timings in ms; prompt
and answer text are stored only with `[pipeline] log_text = true`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgebox import telemetry
from edgebox.box.config import BoxConfig
from edgebox.box.forwarder import BreakerState, Forwarder, Outcome
from edgebox.box.library import DocumentLibrary, local_answer
from edgebox.box.responder import EchoResponder, RequestContext
from edgebox.box.standing import PhoneStanding, Standing
from edgebox.box.textmodels import TextModels
from edgebox.log import get_logger
from edgebox.pipeline import trace as tracing
from edgebox.pipeline.chat import MAX_TOTAL_CONTENT_CHARS, Role, total_content_chars
from edgebox.pipeline.classifier import Decision, InjectionPolicy
from edgebox.pipeline.quota import (
    MemoryQuota,
    QuotaExceeded,
    QuotaLimit,
    QuotaRequestTooLarge,
    estimate_tokens,
)
from edgebox.session import messages as app
from edgebox.store.aio import StoreWorker
from edgebox.store.semantic_cache import normalise_prompt

if TYPE_CHECKING:
    from edgebox.box.daemon import BoxDaemon

log = get_logger("edgebox.box.pipeline")
PIECE_CHARS = 120  # cached/local answers stream in pieces like a model answer would


@dataclass
class _Request:
    prompt: app.Prompt
    phone: str
    trace: tracing.TraceParent
    log_id: str
    t0: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)
    decision: str = "error"
    answer: str = ""

    def mark(self, name: str) -> None:
        self.timings[name] = round((time.perf_counter() - self.t0) * 1000, 3)


class BoxPipeline:
    def __init__(
        self,
        cfg: BoxConfig,
        worker: StoreWorker,
        *,
        models: TextModels | None,
        library: DocumentLibrary | None,
        uplink: Any,
        forwarder: Forwarder | None,
        clock: Any = time.monotonic,
        telemetry: telemetry.Telemetry | None = None,
    ) -> None:
        self.cfg = cfg
        self.worker = worker
        self.models = models
        self.library = library
        self.uplink = uplink
        self.forwarder = forwarder
        self.clock = clock
        self.telemetry = telemetry
        p = cfg.pipeline
        self.policy = InjectionPolicy(p.injection_flag_threshold, p.injection_block_threshold)
        self.quota = MemoryQuota(clock=clock)
        self.limit = QuotaLimit(p.quota_tokens, p.quota_window_s)
        self.standing = PhoneStanding(p)
        self.model_name = cfg.gateway.model
        self._echo = EchoResponder()
        self._pending: set[asyncio.Future[Any]] = set()
        if forwarder is not None:
            forwarder.on_answer = self._log_forwarded

    # -- the chain -----------------------------------------------------------------------------
    async def respond(self, prompt: app.Prompt, ctx: RequestContext) -> AsyncIterator[str | app.Done]:
        if self.telemetry is None:
            parent = tracing.parse(prompt.trace) or tracing.new()
            plain = self._traced(prompt, ctx, parent.child(), None)
            try:
                async for item in plain:
                    yield item
            finally:
                await plain.aclose()  # the prompt log row is written before the caller moves on
            return
        # A span started, not made current: an async generator may be finished from another context.
        span = self.telemetry.tracer.start_span(
            "box.prompt",
            context=telemetry.context_from_traceparent(prompt.trace),
            kind=telemetry.SpanKind.SERVER,
            attributes={"edgebox.phone": ctx.phone_id, "edgebox.request": prompt.id},
        )
        mine = tracing.parse(telemetry.traceparent(span)) or tracing.new()
        traced = self._traced(prompt, ctx, mine, span)
        try:
            async for item in traced:
                yield item
        finally:
            await traced.aclose()
            span.end()

    async def _traced(
        self, prompt: app.Prompt, ctx: RequestContext, span: tracing.TraceParent, otel: Any
    ) -> AsyncGenerator[str | app.Done, None]:
        req = _Request(prompt, ctx.phone_id, span, f"{span.trace_id}-{span.parent_id}")
        try:
            async for item in self._chain(req):
                yield item
        finally:
            req.mark("total")
            if otel is not None:
                otel.set_attribute("edgebox.decision", req.decision)
            await self._log(req)

    async def _chain(self, req: _Request) -> AsyncIterator[str | app.Done]:
        prompt, phone = req.prompt, req.phone
        now = self.clock()
        # 1. standing
        refusal = self.standing.admit(phone, now)
        if refusal is not None:
            req.decision = f"refused_{refusal.standing.value}"
            raise _error(
                app.ErrorKind.busy,
                f"this phone is {refusal.standing.value} by the box; try again later",
                retry=refusal.retry_after_s,
            )
        # 2. limits
        if total_content_chars(prompt.messages) > MAX_TOTAL_CONTENT_CHARS:
            req.decision = "too_large"
            raise _error(app.ErrorKind.too_large, "the conversation is longer than the box accepts")
        # 3. classifier (+ the embedding the cache and documents use)
        users = [m.content for m in prompt.messages if m.role is Role.user]
        question = users[-1] if users else prompt.messages[-1].content
        embedding: Any = None
        if self.models is not None:
            scores, vectors = await asyncio.to_thread(self.models.analyse, users or [question])
            embedding = vectors[-1]
        else:
            scores = [0.0]
        req.mark("classified")
        score = max(scores) if scores else 0.0
        decision = self.policy.decide(score)
        req.timings["injection_score"] = round(max(score, 0.0), 4)
        if decision is Decision.block:
            req.decision = "blocked"
            self._strike(phone)
            raise _error(app.ErrorKind.injection_blocked, "the box's injection policy refused this prompt")
        # 4. quota
        estimate = estimate_tokens(
            total_content_chars(prompt.messages), len(prompt.messages), prompt.options.max_tokens
        )
        try:
            reservation = self.quota.reserve_now(f"phone:{phone}", estimate, self.limit)
        except QuotaRequestTooLarge:
            req.decision = "quota_too_large"
            raise _error(
                app.ErrorKind.too_large, "this request alone is larger than the phone's quota"
            ) from None
        except QuotaExceeded as exc:
            req.decision = "quota_exceeded"
            self._strike(phone)
            raise _error(
                app.ErrorKind.quota_exceeded, "the phone's token quota is used up", retry=exc.retry_after
            ) from None
        used = 0
        try:
            async for item in self._answer(req, question, embedding):
                if isinstance(item, app.Done):
                    used = item.usage.total_tokens
                yield item
        finally:
            self.quota.reconcile_now(reservation, used, self.limit)

    async def _answer(self, req: _Request, question: str, embedding: Any) -> AsyncIterator[str | app.Done]:
        prompt = req.prompt
        single_turn = sum(1 for m in prompt.messages if m.role is not Role.system) == 1
        cache = self.cfg.cache
        # 5. semantic cache
        if cache.enabled and single_turn and embedding is not None:
            store = self.worker.store
            hit = await self.worker.call(
                store.cache.lookup,
                embedding,
                model=self.model_name,
                threshold=cache.threshold,
                count_hit=False,
            )
            req.mark("cache_lookup")
            if hit is not None:
                req.decision = "cached"
                req.timings["cache_similarity"] = round(max(hit.similarity, 0.0), 4)
                req.answer = hit.entry.answer
                for piece in _pieces(hit.entry.answer):
                    yield piece
                # The hit counter is a write (an fsync): counted on the store thread, after the answer.
                self._background(self.worker.call(store.cache.count_hit, hit.entry.entry_id))
                yield app.Done(id=prompt.id, source="cache", trace=req.trace.format())
                return
        # 6. documents (decided together with the WAN state)
        passages = []
        if self.library is not None and embedding is not None and self.cfg.documents.top_k:
            passages = await self.library.search(embedding)
            req.mark("documents")
        best = passages[0].score if passages else 0.0
        docs = self.cfg.documents
        if passages:
            req.timings["document_score"] = round(max(best, 0.0), 4)
        wan_down = self.uplink is None or not self._uplink_allowed()
        if best >= docs.answer_threshold or (wan_down and best >= docs.offline_threshold):
            async for item in self._local(req, passages, offline=wan_down and best < docs.answer_threshold):
                yield item
            return
        # 7. uplink (or the queue)
        if prompt.options.can_wait and self.forwarder is not None and self.cfg.outbox.enabled:
            async for item in self._via_outbox(req, single_turn, embedding):
                yield item
            return
        if self.uplink is None and self.cfg.dev.echo:
            # Development only (transport tests): no gateway configured, the question is echoed.
            req.decision = "echo"
            async for item in self._echo.respond(prompt, RequestContext(req.phone, req.trace.format())):
                yield item
            return
        if wan_down:
            req.decision = "unavailable"
            raise _error(
                app.ErrorKind.upstream_unavailable,
                "the AI service is not reachable and the branch documents do not answer this",
                retry=self._retry_in(),
            )
        try:
            async for item in self._forward(req, single_turn, embedding):
                yield item
        except app.MessageError as exc:
            if exc.kind is app.ErrorKind.upstream_unavailable and passages and best >= docs.offline_threshold:
                async for item in self._local(req, passages, offline=True):
                    yield item
                return
            raise

    async def _forward(
        self, req: _Request, single_turn: bool, embedding: Any, key: str | None = None
    ) -> AsyncIterator[str | app.Done]:
        ctx = RequestContext(req.phone, req.trace.format())
        parts: list[str] = []
        prompt = app.Prompt(
            id=req.prompt.id,
            messages=req.prompt.messages,
            trace=req.trace.format(),
            options=req.prompt.options,
        )
        first = True
        try:
            async for item in self.uplink.respond(prompt, ctx, idempotency_key=key):
                if isinstance(item, app.Done):
                    req.decision = "forwarded"
                    req.answer = "".join(parts)
                    self._breaker_success()
                    if single_turn and embedding is not None and self.cfg.cache.enabled and req.answer:
                        await self._cache_put(req, embedding)
                    yield item
                    return
                if first:
                    req.mark("first_chunk")
                    first = False
                parts.append(item)
                yield item
        except app.MessageError as exc:
            self._on_uplink_error(req, exc)
            raise

    async def _via_outbox(
        self, req: _Request, single_turn: bool, embedding: Any
    ) -> AsyncIterator[str | app.Done]:
        fwd = self.forwarder
        assert fwd is not None
        prompt = app.Prompt(
            id=req.prompt.id,
            messages=req.prompt.messages,
            trace=req.trace.format(),
            options=req.prompt.options,
        )
        # Requests already waiting go first (in-order replay): this one joins the queue behind them.
        empty = await fwd.queue_is_empty()
        entry = await fwd.enqueue(req.phone, prompt)
        req.mark("queued")
        if entry.state == "done":  # the same request again (a retry after a lost link): its answer
            stored = await self.worker.call(self.worker.store.outbox.answer_for, entry.entry_id)
            if stored is not None:
                req.decision = "duplicate"
                final = app.decode(stored.done_json.encode())
                if isinstance(final, app.Error):
                    raise _error(final.code, final.message)
                async with fwd.lock_for(req.phone):  # not interleaved with a delivery of the same
                    for piece in _pieces(stored.answer):
                        yield piece
                    await self.worker.call(self.worker.store.outbox.mark_delivered, entry.entry_id)
                    yield final if isinstance(final, app.Done) else app.Done(id=prompt.id)
                return
        if entry.state in ("dead", "expired"):
            req.decision = f"outbox_{entry.state}"
            outbox = self.worker.store.outbox
            stored = await self.worker.call(outbox.answer_for, entry.entry_id)
            if stored is not None:  # the phone is hearing it now: not delivered again later
                await self.worker.call(outbox.mark_delivered, entry.entry_id)
            why = "expired in the box's queue" if entry.state == "expired" else "was given up by the box"
            raise _error(
                app.ErrorKind.upstream_unavailable,
                f"this request {why} before the AI service could be reached",
            )
        claimed = None
        if empty and self._uplink_allowed():
            claimed = await self.worker.call(
                self.worker.store.outbox.claim_entry, entry.entry_id, lease_s=self.cfg.outbox.lease_s
            )
        if claimed is None:
            req.decision = "queued"
            fwd.wake()
            yield app.Done(id=prompt.id, finish_reason="queued", trace=req.trace.format())
            return
        parts: list[str] = []
        done: app.Done | None = None
        try:
            async for item in self._forward(req, single_turn, embedding, key=claimed.idempotency_key):
                if isinstance(item, app.Done):
                    done = item
                    break
                parts.append(item)
                yield item
        except app.MessageError as exc:
            if exc.kind is app.ErrorKind.upstream_unavailable and not parts:
                await fwd.release(claimed, exc.kind.value)
                req.decision = "queued"
                fwd.wake()
                yield app.Done(id=prompt.id, finish_reason="queued", trace=req.trace.format())
                return
            if exc.kind is app.ErrorKind.upstream_unavailable:
                await fwd.release(claimed, exc.kind.value)  # replayed later with the same key
                raise
            await fwd.finish(
                claimed,
                _queued(req, prompt),
                Outcome("", error=app.Error(code=exc.kind, message=str(exc)[:500], id=prompt.id)),
                delivered=True,
            )
            raise
        except asyncio.CancelledError:
            # Shutdown or the phone went away mid-stream: the entry goes back to the queue and the
            # answer reaches the phone later (the gateway does not forward the key twice).
            with contextlib.suppress(BaseException):
                await asyncio.shield(fwd.release(claimed, "interrupted"))
            raise
        final = done or app.Done(id=prompt.id, trace=req.trace.format())
        await fwd.finish(claimed, _queued(req, prompt), Outcome("".join(parts), done=final), delivered=True)
        yield final

    async def _local(
        self, req: _Request, passages: list[Any], *, offline: bool
    ) -> AsyncIterator[str | app.Done]:
        floor = passages[0].score * 0.85
        chosen = [p for p in passages if p.score >= floor][: self.cfg.documents.top_k]
        text = local_answer(chosen, offline=offline)
        req.decision = "local_offline" if offline else "local"
        req.answer = text
        for piece in _pieces(text):
            yield piece
        yield app.Done(id=req.prompt.id, source="local", trace=req.trace.format())

    # -- helpers -------------------------------------------------------------------------------
    def _background(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _uplink_allowed(self) -> bool:
        if self.uplink is None:
            return False
        if self.forwarder is None:
            return True
        return self.forwarder.breaker.state(self.forwarder.clock()) is not BreakerState.open

    def _retry_in(self) -> float | None:
        if self.forwarder is None:
            return None
        return round(self.forwarder.breaker.retry_in(self.forwarder.clock()), 1) or None

    def _breaker_success(self) -> None:
        if self.forwarder is not None:
            self.forwarder.breaker.success()

    def _on_uplink_error(self, req: _Request, exc: app.MessageError) -> None:
        code = getattr(exc, "gateway_code", exc.kind.value)
        req.decision = f"gateway_{code}"[:64]
        now = self.clock()
        if exc.kind is app.ErrorKind.upstream_unavailable:
            req.decision = "unavailable"
            if self.forwarder is not None:
                self.forwarder.breaker.failure(self.forwarder.clock())
            return
        self._breaker_success()
        if code == "phone_suspended":
            self.standing.suspend(req.phone, now)
            log.warning("phone_suspended_by_gateway", phone=req.phone)
        elif exc.kind in (app.ErrorKind.injection_blocked, app.ErrorKind.quota_exceeded):
            self._strike(req.phone)

    def _strike(self, phone: str) -> None:
        changed = self.standing.strike(phone, self.clock())
        if changed is not None:
            log.warning("phone_standing_changed", phone=phone, standing=changed.standing.value)

    async def _cache_put(self, req: _Request, embedding: Any) -> None:
        question = next(m.content for m in req.prompt.messages if m.role is not Role.system)
        with contextlib.suppress(Exception):
            await self.worker.call(
                self.worker.store.cache.put,
                self.model_name,
                normalise_prompt(question)[:16_000],
                req.answer[:64_000],
                embedding,
                ttl_s=self.cfg.cache.ttl_s,
            )

    async def _log(self, req: _Request) -> None:
        keep = self.cfg.pipeline.log_text
        question = req.prompt.messages[-1].content if keep else None
        try:
            await self.worker.call(
                self.worker.store.prompt_log.record,
                req.log_id,
                phone_id=req.phone or None,
                decision=req.decision[:64],
                timings_ms=req.timings,
                model=self.model_name,
                prompt_text=question,
                answer_text=req.answer if keep else None,
            )
        except Exception as exc:
            log.warning("prompt_log_failed", trace=req.trace.trace_id, error=type(exc).__name__)

    async def _log_forwarded(self, phone: str, trace: str, outcome: Outcome) -> None:
        tp = tracing.parse(trace) or tracing.new()
        span = tp.child()
        decision = outcome.decision or (
            "delivered_later" if outcome.error is None else f"queued_{outcome.error.code.value}"
        )
        await self.worker.call(
            self.worker.store.prompt_log.record,
            f"{span.trace_id}-{span.parent_id}",
            phone_id=phone or None,
            decision=decision[:64],
            timings_ms={},
            model=self.model_name,
            answer_text=outcome.text if self.cfg.pipeline.log_text else None,
        )

    def standing_status(self, phone: str) -> str:
        return self.standing.status(phone, self.clock())

    async def aclose(self) -> None:
        await asyncio.gather(*self._pending, return_exceptions=True)
        await self.quota.close()


def _queued(req: _Request, prompt: app.Prompt) -> Any:
    from edgebox.box.forwarder import QueuedRequest

    return QueuedRequest(req.phone, prompt.id, prompt)


def _pieces(text: str) -> list[str]:
    return [text[i : i + PIECE_CHARS] for i in range(0, len(text), PIECE_CHARS)] or [""]


def _error(kind: app.ErrorKind, message: str, *, retry: float | None = None) -> app.MessageError:
    exc = app.MessageError(kind, message)
    exc.retry_after_s = None if retry is None else round(max(retry, 0.0), 1)
    return exc


# -- wiring (the daemon) ---------------------------------------------------------------------


@dataclass
class PipelineParts:
    pipeline: BoxPipeline
    library: DocumentLibrary | None
    uplink: Any
    forwarder: Forwarder | None
    renewal: Any
    tasks: list[asyncio.Task[Any]]


async def build_pipeline(daemon: BoxDaemon, *, models: TextModels | None = None) -> PipelineParts:
    cfg = daemon.cfg
    if models is None:
        models = await asyncio.to_thread(TextModels.load, cfg.pipeline.classifier)
    library = DocumentLibrary(cfg.documents, daemon.worker, models)
    uplink = None
    forwarder = None
    renewal = None
    tasks: list[asyncio.Task[Any]] = []
    if cfg.gateway.url:
        from edgebox.box.renewal import CertificateRenewal, build_uplink

        uplink = build_uplink(cfg, daemon.identity)
        renewal = CertificateRenewal(cfg, daemon.identity, uplink)
        tasks.append(asyncio.create_task(renewal.run(), name="cert-renewal"))
    if cfg.outbox.enabled and uplink is not None:
        forwarder = Forwarder(cfg.outbox, daemon.worker, uplink, box_id=daemon.identity.box_id_hex)
        tasks.append(asyncio.create_task(forwarder.run(), name="outbox"))
    pipeline = BoxPipeline(
        cfg,
        daemon.worker,
        models=models,
        library=library,
        uplink=uplink,
        forwarder=forwarder,
        telemetry=daemon.telemetry,
    )
    return PipelineParts(pipeline, library, uplink, forwarder, renewal, tasks)


_ = Standing  # re-exported for the admin page's status labels
