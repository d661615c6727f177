"""Store-and-forward: the durable outbox worker, its circuit breaker, and delivery to phones.

Theory of operation. A request a phone marked `can_wait` is written to the outbox (SQLCipher,
`synchronous=FULL`) *before* anything is sent upstream, under an idempotency key derived from the
phone and request ids; the gateway forwards one key at most once and answers a retry with the stored
outcome (contract 6), so delivery is at-least-once from the box and exactly-once upstream.

- `Forwarder.run()` replays the queue strictly in order: it leases only the oldest unfinished entry
  (`claim_head`), sends it with its key, and on success stores the answer and marks the entry done
  in one transaction (`ack_with_answer`). A failure that a retry can cure (`upstream_unavailable`,
  timeouts) returns the entry with exponential backoff + jitter and holds back everything behind it;
  a refusal that no retry can cure (blocked, too large) is answered to the phone as that error.
  Entries expire after `[outbox] ttl_s`; `max_attempts` failures make an entry dead. Either way the
  request is never sent, and its phone is told: whenever the loop is idle it records, for each
  expired/dead entry without an answer, an `upstream_unavailable` error saying why
  (`settle_failed`), and delivers it like any answer.
- `CircuitBreaker` (sans-I/O): after `breaker_failures` consecutive failures the uplink is *open*
  for `breaker_open_s`: live requests go straight to local answers / the queue without waiting for a
  timeout; then one probe (*half-open*) decides. Any success closes it.
- Delivery: when a phone's session is established (`on_phone_connected`) or when an answer arrives
  while it is connected, waiting answers go out as `chunk`s + `done` with the original request id,
  and are marked delivered (kept until the outbox retention purges them: a phone asking again
  with the same request id gets the stored answer).
On a graceful stop the daemon calls `pause()`: no new entry is sent, the one being sent may finish
(`sending`), and one cut off by the stop goes back to the queue at once.
A `kill -9` at any point loses nothing: an entry is either pending, or inflight with a lease (returned
to pending by `recover()` at the next start), or done with its answer stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgspec

from edgebox.box.config import OutboxSection
from edgebox.box.responder import RequestContext
from edgebox.log import get_logger
from edgebox.session import messages as app
from edgebox.store.aio import StoreWorker
from edgebox.store.errors import OutboxConflictError
from edgebox.store.outbox import BackoffPolicy, OutboxEntry, WaitingAnswer

log = get_logger("edgebox.box.outbox")

# Error kinds a retry can cure: the entry stays queued. Everything else is a final answer (an error).
RETRYABLE = frozenset({app.ErrorKind.upstream_unavailable, app.ErrorKind.busy})


class BreakerState(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


class CircuitBreaker:
    def __init__(self, failures: int, open_s: float) -> None:
        self.threshold = failures
        self.open_s = open_s
        self.failures = 0
        self.opened_at: float | None = None
        self._probing = False

    def state(self, now: float) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.closed
        if now - self.opened_at >= self.open_s:
            return BreakerState.half_open
        return BreakerState.open

    def allow(self, now: float) -> bool:
        """May a request go upstream now? In half-open, exactly one probe at a time."""
        st = self.state(now)
        if st is BreakerState.closed:
            return True
        if st is BreakerState.half_open and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._probing = False

    def failure(self, now: float) -> None:
        self.failures += 1
        self._probing = False
        if self.opened_at is not None or self.failures >= self.threshold:
            self.opened_at = now

    def retry_in(self, now: float) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.open_s - now)


class QueuedRequest(msgspec.Struct, frozen=True):
    """The outbox payload: enough to send the request again and to find the phone."""

    phone_id: str
    request_id: str
    prompt: app.Prompt


_payload_decoder = msgspec.json.Decoder(QueuedRequest)


def idempotency_key(box_id: str, phone_id: str, request_id: str) -> str:
    digest = hashlib.sha256(f"{box_id}\0{phone_id}\0{request_id}".encode()).hexdigest()[:32]
    return f"ebx-{digest}"


@dataclass
class Outcome:
    text: str
    done: app.Done | None = None
    error: app.Error | None = None
    decision: str | None = None  # the prompt-log decision, when not derived from done/error


Sender = Callable[[app.Prompt, RequestContext, str], Any]  # -> async iterator of str | Done


class Forwarder:
    def __init__(
        self,
        cfg: OutboxSection,
        worker: StoreWorker,
        uplink: Any,
        *,
        box_id: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.worker = worker
        self.uplink = uplink
        self.box_id = box_id
        self.clock = clock
        self.breaker = CircuitBreaker(cfg.breaker_failures, cfg.breaker_open_s)
        worker.store.outbox.backoff = BackoffPolicy(cfg.backoff_base_s, cfg.backoff_max_s, cfg.backoff_jitter)
        self.server: Any = None  # BoxServer, set by the daemon
        self.on_answer: Callable[[str, str, Outcome], Any] | None = None  # prompt log hook
        self._wake = asyncio.Event()
        self._deliver_lock: dict[str, asyncio.Lock] = {}
        self.delivered = 0
        self.forwarded = 0
        self.paused = False
        self.sending = False  # an entry is being sent by the replay loop right now

    # -- enqueue (the pipeline) ----------------------------------------------------------------
    async def enqueue(self, phone_id: str, prompt: app.Prompt) -> OutboxEntry:
        key = idempotency_key(self.box_id, phone_id, prompt.id)
        payload = msgspec.json.encode(QueuedRequest(phone_id, prompt.id, prompt))
        outbox = self.worker.store.outbox
        try:
            return await self.worker.call(
                outbox.enqueue, key, payload, ttl_s=self.cfg.ttl_s, max_attempts=self.cfg.max_attempts
            )
        except OutboxConflictError:
            # The same request id again with a new trace (a phone retrying after a lost link) is the
            # same request; another question under a used id is refused.
            existing = await self.worker.call(outbox.get_by_key, key)
            if existing is not None:
                try:
                    old = _payload_decoder.decode(existing.payload).prompt
                except msgspec.DecodeError:
                    old = None
                if old is not None and old.messages == prompt.messages and old.options == prompt.options:
                    return existing
            raise app.MessageError(
                app.ErrorKind.duplicate_id, "this request id was already used for another request", prompt.id
            ) from None

    async def queue_is_empty(self) -> bool:
        return await self.worker.call(self.worker.store.outbox.unfinished) == 0

    def wake(self) -> None:
        self._wake.set()

    def pause(self) -> None:
        """Graceful stop: send no further entry (the queue stays as it is, durable)."""
        self.paused = True
        self._wake.set()

    def status(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "breaker": self.breaker.state(now).value,
            "consecutive_failures": self.breaker.failures,
            "forwarded": self.forwarded,
            "delivered": self.delivered,
        }

    # -- the replay loop -----------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            now = self.clock()
            sent = False
            if not self.paused and self.breaker.allow(now):
                entry = await self.worker.call(self.worker.store.outbox.claim_head, lease_s=self.cfg.lease_s)
                if entry is not None:
                    sent = True
                    self.sending = True
                    try:
                        await self._send(entry)
                    except asyncio.CancelledError:
                        # Stopped mid-send: back to the queue now (not only when the lease ends);
                        # the replay uses the same idempotency key, so the gateway sends it once.
                        with contextlib.suppress(BaseException):
                            await asyncio.shield(self.release(entry, "interrupted"))
                        raise
                    except KeyboardInterrupt:
                        raise
                    except Exception as exc:  # never let one entry stop the queue
                        log.error("outbox_send_failed", entry=entry.entry_id, error=type(exc).__name__)
                        await self.release(entry, "internal")
                        await asyncio.sleep(self.cfg.poll_s)
                    finally:
                        self.sending = False
                else:
                    # Nothing due: a half-open probe slot we took is handed back.
                    self.breaker._probing = False
            if not sent:
                if not self.paused:
                    try:
                        await self.settle_failed()
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # the next idle turn tries again
                        log.error("outbox_settle_failed", error=type(exc).__name__)
                wait = self.cfg.poll_s
                if self.breaker.state(self.clock()) is BreakerState.open:
                    wait = max(0.05, min(wait, self.breaker.retry_in(self.clock())))
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)

    async def _send(self, entry: OutboxEntry) -> None:
        try:
            req = _payload_decoder.decode(entry.payload)
        except msgspec.DecodeError:
            log.error("outbox_payload_invalid", entry=entry.entry_id)
            await self.worker.call(
                self.worker.store.outbox.fail, entry.entry_id, error_code="payload_invalid"
            )
            return
        outcome = await self.attempt(entry, req)
        if outcome is None:
            return
        await self.finish(entry, req, outcome, delivered=False)
        await self.deliver_waiting(req.phone_id)

    async def attempt(self, entry: OutboxEntry, req: QueuedRequest) -> Outcome | None:
        """Send one leased entry upstream. None: it went back to the queue (retry later)."""
        ctx = RequestContext(phone_id=req.phone_id, trace=req.prompt.trace)
        parts: list[str] = []
        done: app.Done | None = None
        try:
            async for item in self.uplink.respond(req.prompt, ctx, idempotency_key=entry.idempotency_key):
                if isinstance(item, app.Done):
                    done = item
                else:
                    parts.append(item)
        except app.MessageError as exc:
            if exc.kind in RETRYABLE:
                self.breaker.failure(self.clock())
                await self.worker.call(
                    self.worker.store.outbox.fail, entry.entry_id, error_code=exc.kind.value
                )
                log.info(
                    "outbox_retry_later", entry=entry.entry_id, attempts=entry.attempts, code=exc.kind.value
                )
                return None
            self.breaker.success()  # the gateway answered: the WAN is up
            return Outcome("", error=app.Error(code=exc.kind, message=str(exc)[:500], id=req.request_id))
        self.breaker.success()
        self.forwarded += 1
        return Outcome("".join(parts), done=done or app.Done(id=req.request_id))

    async def finish(
        self, entry: OutboxEntry, req: QueuedRequest, outcome: Outcome, *, delivered: bool
    ) -> None:
        final: app.Done | app.Error = outcome.error or outcome.done or app.Done(id=req.request_id)
        await self.worker.call(
            self.worker.store.outbox.ack_with_answer,
            entry.entry_id,
            phone_id=req.phone_id,
            request_id=req.request_id,
            answer=outcome.text,
            done_json=app.encode(final).decode(),
            delivered=delivered,
        )
        if self.on_answer is not None:
            with contextlib.suppress(Exception):
                await self.on_answer(req.phone_id, req.prompt.trace or "", outcome)

    async def settle_failed(self) -> int:
        """Tell the phones whose queued requests expired or were given up (dead): an error answer
        is stored for each and delivered. Returns how many were settled."""
        outbox = self.worker.store.outbox
        settled = 0
        for entry in await self.worker.call(outbox.failed_unanswered):
            try:
                req = _payload_decoder.decode(entry.payload)
            except msgspec.DecodeError:
                # No phone to tell: recorded with no phone, so it is not listed again.
                await self.worker.call(
                    outbox.answer_failed, entry.entry_id, phone_id="", request_id="", done_json="{}"
                )
                continue
            if entry.state == "expired":
                message = "this request expired in the box's queue before the AI service could be reached"
            else:
                message = "this request could not be delivered: the box gave up after repeated failures"
            error = app.Error(code=app.ErrorKind.upstream_unavailable, message=message, id=req.request_id)
            stored = await self.worker.call(
                outbox.answer_failed,
                entry.entry_id,
                phone_id=req.phone_id,
                request_id=req.request_id,
                done_json=app.encode(error).decode(),
            )
            if not stored:
                continue
            settled += 1
            log.info("outbox_request_" + entry.state, entry=entry.entry_id, phone=req.phone_id)
            if self.on_answer is not None:
                with contextlib.suppress(Exception):
                    await self.on_answer(
                        req.phone_id,
                        req.prompt.trace or "",
                        Outcome("", error=error, decision=f"outbox_{entry.state}"),
                    )
            await self.deliver_waiting(req.phone_id)
        return settled

    async def release(self, entry: OutboxEntry, code: str) -> None:
        with contextlib.suppress(Exception):
            await self.worker.call(self.worker.store.outbox.fail, entry.entry_id, error_code=code)

    # -- delivery to phones --------------------------------------------------------------------
    def lock_for(self, phone_id: str) -> asyncio.Lock:
        """Held while answers of this phone are being delivered (one delivery at a time)."""
        return self._deliver_lock.setdefault(phone_id, asyncio.Lock())

    async def on_phone_connected(self, phone_id: str, _session: Any) -> None:
        await self.deliver_waiting(phone_id)

    async def deliver_waiting(self, phone_id: str) -> int:
        """Send every waiting answer of `phone_id` over one of its live sessions (if any)."""
        server = self.server
        if server is None:
            return 0
        sent = 0
        async with self.lock_for(phone_id):
            waiting: list[WaitingAnswer] = await self.worker.call(
                self.worker.store.outbox.waiting_answers, phone_id
            )
            for answer in waiting:
                sessions = server.sessions_for(phone_id)
                if not sessions:
                    break
                session = sessions[0]
                if any(answer.request_id in s._requests for s in sessions):
                    continue  # the phone is asking for it again right now: that request answers it
                final = app.decode(answer.done_json.encode())
                try:
                    text = answer.answer
                    step = 8000
                    for seq, i in enumerate(range(0, len(text), step)):
                        await session.send_app(
                            app.Chunk(id=answer.request_id, seq=seq, delta=text[i : i + step])
                        )
                    await session.send_app(final)
                except Exception as exc:  # the link went away: it stays waiting
                    log.info("delivery_interrupted", phone=phone_id, error=type(exc).__name__)
                    break
                await self.worker.call(self.worker.store.outbox.mark_delivered, answer.entry_id)
                self.delivered += 1
                sent += 1
                log.info("queued_answer_delivered", phone=phone_id, request=answer.request_id)
        return sent

    async def aclose(self) -> None:
        return None


def done_json(done: app.Done) -> str:
    return json.dumps(msgspec.to_builtins(done))
