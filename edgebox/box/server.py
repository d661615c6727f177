"""The box's session server: one task per phone link, from framing to application messages.

Theory of operation: `BoxServer.serve(listener)` accepts links from any transport (loopback, BLE)
and runs `handle_link` for each. A link first runs the framing capabilities exchange, then it must
be admitted (at most `max_unauthenticated` handshakes that have not yet authenticated a phone, new
ones through a token bucket: a stranger in radio range cannot tie up the box or the registry; over
the limit the link gets a plaintext `busy` and is closed). Then the sans-I/O `BoxConnection`
handshake runs, its events answered from the `PhoneRegistry`: the psk of a named pairing secret (a
dead or unknown id gets none, and the connection goes on with a random psk, so the box is no
oracle), the full-key status of an authenticated phone, the atomic completion of a pairing. Only a
PHONE_AUTH that failed to verify (`BoxConnection.failed_proof`) counts against a pairing secret;
a peer that proved nothing costs it nothing.

Once established, each DATA record is decoded as an application message: a `prompt` starts a
responder task whose deltas stream back as `chunk`s and end with one `done` (or `error`); `cancel`
cancels it; `ping` gets `pong`. The receive loop never sends: replies are queued in the connection
and written by the link's `SessionDriver` (a writer task that also drives the connection's clock:
handshake deadline, rekeys, keep-alives), so a full send window never stops the box from reading
the phone's acks. An invalid application message gets a typed `error` and the session goes on; a
remote protocol error (replay, tamper, bad frame) ends that link only and is counted as such; a
local one (our own bug) is logged as a bug and never blamed on the phone. `drop_phone` ends a
phone's live sessions at once (an encrypted `phone_revoked`). Log lines carry the phone id,
session id and trace id, never text or keys.

Graceful stop (the daemon's SIGTERM): `stop_accepting()` first, so that the accept loops end
without touching the links they started (the listeners stop advertising / listening) and a new
prompt on a live link is refused with `busy` and a retry-after; `drain()` waits for the answers in
flight; only then `close_links()` ends every link.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from edgebox.box.identity import BoxIdentity
from edgebox.box.registry import PairingOutcome, PhoneRegistry, PhoneStatus
from edgebox.box.responder import RequestContext, Responder
from edgebox.log import get_logger
from edgebox.session import messages as app
from edgebox.session.config import DEFAULT_CONFIG, SessionConfig
from edgebox.session.connection import (
    BoxConnection,
    MessageReceived,
    PairingSecretRequested,
    PeerClosed,
    PeerError,
    PhoneAuthenticated,
    phone_id,
)
from edgebox.session.errors import ErrorCode, LocalProtocolError, RemoteProtocolError, SessionError
from edgebox.session.framing import Role
from edgebox.session.handshake import Mode
from edgebox.transport.base import DatagramLink, LinkClosed, LinkListener
from edgebox.transport.channel import FramedChannel
from edgebox.transport.driver import SessionDriver

log = get_logger("edgebox.box.server")

MAX_INFLIGHT_PROMPTS = 4
MAX_WRITE_BACKLOG = 64  # records waiting for the writer before the receive loop stops taking work
DRAINING_RETRY_AFTER_S = 10.0  # a prompt that arrives while the box stops: ask again after this


@dataclass
class ServerStats:
    links: int = 0
    sessions: int = 0
    pairings: int = 0
    refused: int = 0
    busy: int = 0
    pairing_failures: int = 0
    protocol_errors: int = 0
    local_errors: int = 0
    prompts: int = 0


class HandshakeAdmission:
    """Bounds handshakes that have not authenticated anyone: at most `limit` at once, and new ones
    through a token bucket (`burst`, refilled at `rate` per second). Time is passed in."""

    def __init__(self, config: SessionConfig, now: float) -> None:
        self.limit = config.max_unauthenticated
        self.rate = config.handshake_rate_per_s
        self.burst = float(config.handshake_burst)
        self.tokens = self.burst
        self.stamp = now
        self.pending = 0

    def admit(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.pending >= self.limit or self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        self.pending += 1
        return True

    def release(self) -> None:
        self.pending = max(0, self.pending - 1)


class BoxServer:
    def __init__(
        self,
        identity: BoxIdentity,
        registry: PhoneRegistry,
        responder: Responder,
        *,
        config: SessionConfig = DEFAULT_CONFIG,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.identity = identity
        self.registry = registry
        self.responder = responder
        self.config = config
        self.clock = clock
        self.stats = ServerStats()
        self.admission = HandshakeAdmission(config, clock())
        self._tasks: set[asyncio.Task[None]] = set()
        self._live: dict[_LinkSession, asyncio.Task[Any]] = {}  # every running link, by its session
        self.draining = False  # stop_accepting() was called: no new links or prompts
        # Called with (phone id, session) once a session is established (the box daemon delivers
        # queued answers then; hook added by the box issue, 11).
        self.on_established: Callable[[str, _LinkSession], Awaitable[None]] | None = None

    def live_phones(self) -> list[str]:
        return sorted(self.connected_phones())

    def sessions_for(self, phone_id: str) -> list[_LinkSession]:
        """The phone's established sessions (deliveries of queued answers go over the first)."""
        return [s for s in self._live if s.phone == phone_id and s.conn is not None and s.conn.established]

    def inflight(self) -> int:
        """Prompts being answered right now, over all links."""
        return sum(len(s._requests) for s in self._live)

    def stop_accepting(self) -> None:
        """Graceful stop, step 1: the accept loops end (a listener that stops accepting no longer
        ends them with an error) and leave their links running; new prompts get `busy`."""
        self.draining = True

    async def drain(self, timeout: float, *, also: Callable[[], bool] | None = None) -> bool:
        """Wait (at most `timeout` s) until no prompt is being answered (and `also()` is false).
        Returns whether everything finished in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        def busy() -> bool:
            return bool(self.inflight()) or (also is not None and also())

        while busy() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return not busy()

    async def close_links(self) -> None:
        """Graceful stop, last step: end every link (an answer still running is cancelled)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def serve(self, listener: LinkListener) -> None:
        """Accept links until cancelled, or until the listener stops accepting while the server is
        draining; each link runs in its own task. Ending otherwise ends the links too (after
        `stop_accepting()` they are left to `close_links()`)."""
        try:
            while True:
                try:
                    link = await listener.accept()
                except LinkClosed:
                    if self.draining:
                        return
                    raise
                task = asyncio.create_task(self.handle_link(link), name=f"box-link {link.peer}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            if not self.draining:
                await self.close_links()

    async def handle_link(self, link: DatagramLink) -> None:
        self.stats.links += 1
        channel = FramedChannel(link, Role.box, self.config)
        session = _LinkSession(self, channel)
        task = asyncio.current_task()
        if task is not None:
            self._live[session] = task
        try:
            await session.run()
        except RemoteProtocolError as exc:
            self.stats.protocol_errors += 1
            log.warning("session_failed", peer=link.peer, phone=session.phone, code=exc.code)
            await self._count_failed_proof(session)  # before the peer hears of it where we can
            await session.flush_quietly()
        except LocalProtocolError as exc:
            self.stats.local_errors += 1
            log.error("session_bug", peer=link.peer, phone=session.phone, code=exc.code)
        except LinkClosed:
            log.info("link_closed", peer=link.peer, phone=session.phone)
        finally:
            self._live.pop(session, None)
            await self._count_failed_proof(session)
            session.release_admission()
            await session.stop()
            await channel.close()

    def connected_phones(self) -> dict[str, int]:
        """Phone id -> number of established sessions right now."""
        counts: dict[str, int] = {}
        for session in self._live:
            if session.phone is not None and session.conn is not None and session.conn.established:
                counts[session.phone] = counts.get(session.phone, 0) + 1
        return counts

    async def drop_phone(self, phone_id: str) -> int:
        """End every live link of a phone at once (after a revoke): an encrypted ERROR
        `phone_revoked` where a session is established, then the link task is cancelled.
        Returns how many links were dropped."""
        victims = [(s, t) for s, t in list(self._live.items()) if s.phone == phone_id]
        for session, task in victims:
            await session.end_quietly(ErrorCode.phone_revoked)
            task.cancel()
        await asyncio.gather(*(t for _, t in victims), return_exceptions=True)
        if victims:
            log.info("phone_dropped", phone=phone_id, links=len(victims))
        return len(victims)

    async def _count_failed_proof(self, session: _LinkSession) -> None:
        """A PHONE_AUTH that did not verify under a pairing secret counts as one failed attempt;
        nothing else does (a peer that proved nothing must not use up or lock a secret)."""
        conn = session.conn
        if conn is None or session.proof_counted or not conn.failed_proof:
            return
        session.proof_counted = True
        if conn.mode is Mode.pairing and conn.secret_id is not None:
            self.stats.pairing_failures += 1
            await asyncio.to_thread(self.registry.pairing_failed, conn.secret_id, time.time())


MAX_CHUNK_CHARS = 8_000  # <= 4 UTF-8 bytes (+ escapes) each: well inside one record


class _DeltaStream:
    """Runs a responder in its own task and hands out its text in batches (coalescing)."""

    def __init__(self, items: AsyncIterator[str | app.Done]) -> None:
        self._items = items
        self._pending: list[str] = []
        self._ready = asyncio.Event()
        self._finished = False
        self.done: app.Done | None = None
        self._task = asyncio.create_task(self._produce())

    async def _produce(self) -> None:
        try:
            async for item in self._items:
                if isinstance(item, app.Done):
                    self.done = item
                    break
                if item:
                    self._pending.append(item)
                    self._ready.set()
        finally:
            self._finished = True
            self._ready.set()

    async def batches(self) -> AsyncIterator[str]:
        while True:
            await self._ready.wait()
            self._ready.clear()
            if self._pending:
                text = "".join(self._pending)
                self._pending.clear()
                for i in range(0, len(text), MAX_CHUNK_CHARS):
                    yield text[i : i + MAX_CHUNK_CHARS]
                self._ready.set()  # look again: more may have arrived while we sent
            elif self._finished:
                await self._task  # re-raises what the responder raised
                return

    async def close(self) -> None:
        if not self._task.done():
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class _LinkSession:
    """State of one link on the box (not reusable)."""

    def __init__(self, server: BoxServer, channel: FramedChannel) -> None:
        self.server = server
        self.channel = channel
        self.conn: BoxConnection | None = None
        self.driver: SessionDriver | None = None
        self.phone: str | None = None
        self.proof_counted = False
        self._admitted = False
        self._requests: dict[str, asyncio.Task[None]] = {}
        self._hook: asyncio.Task[None] | None = None

    def release_admission(self) -> None:
        if self._admitted:
            self._admitted = False
            self.server.admission.release()

    async def run(self) -> None:
        server = self.server
        await self.channel.open()
        conn = self.conn = BoxConnection(
            server.identity.private_key,
            capabilities=self.channel.capabilities,
            config=server.config,
            now=server.clock(),
        )
        driver = self.driver = SessionDriver(self.channel, conn, clock=server.clock)
        driver.start()
        if not server.admission.admit(server.clock()):
            server.stats.busy += 1
            log.warning("handshake_refused_busy", peer=self.channel.link.peer)
            conn.refuse(ErrorCode.busy, server.clock())
            await self.flush_quietly()
            return
        self._admitted = True
        while await self._step(conn, driver):
            pass

    async def _step(self, conn: BoxConnection, driver: SessionDriver) -> bool:
        await driver.wait_backlog(MAX_WRITE_BACKLOG)
        data = await self.channel.recv()
        events = conn.receive_message(data, self.server.clock())
        keep_going = True
        for event in events:
            match event:
                case PairingSecretRequested(secret_id=sid):
                    psk = await asyncio.to_thread(self.server.registry.pairing_psk, sid, time.time())
                    conn.provide_secret(psk)  # None: a random psk, answered exactly alike
                case PhoneAuthenticated(phone_key=key, pairing=pairing):
                    self.release_admission()
                    keep_going = await self._decide(conn, key, pairing)
                case MessageReceived(payload=payload):
                    self._on_app(payload)
                case PeerClosed():
                    keep_going = False
                case PeerError(code=code):
                    log.info("peer_error", phone=self.phone, code=code.name)
                    keep_going = False
        driver.kick()
        if not keep_going:
            await self.flush_quietly()
        return keep_going

    async def _decide(self, conn: BoxConnection, key: bytes, pairing: bool) -> bool:
        registry = self.server.registry
        now = time.time()
        if pairing:
            assert conn.secret_id is not None
            outcome = await asyncio.to_thread(registry.complete_pairing, conn.secret_id, key, now)
            if outcome is not PairingOutcome.enrolled:
                code = {
                    PairingOutcome.revoked: ErrorCode.phone_revoked,
                    PairingOutcome.conflict: ErrorCode.phone_id_conflict,
                }.get(outcome, ErrorCode.pairing_secret_invalid)
                return self._refuse(conn, code, f"pairing refused ({outcome.value})")
            self.server.stats.pairings += 1
            self.phone = phone_id(key)
            log.info("phone_paired", phone=self.phone)
        else:
            status = await asyncio.to_thread(registry.phone_status, key)
            if status is not PhoneStatus.enrolled:
                code = ErrorCode.phone_revoked if status is PhoneStatus.revoked else ErrorCode.phone_unknown
                return self._refuse(conn, code, f"phone refused ({status.value})")
            self.phone = phone_id(key)
        conn.accept(self.server.clock())
        self.server.stats.sessions += 1
        log.info("session_established", phone=self.phone, session=conn.session_id.hex(), pairing=pairing)
        if self.server.on_established is not None:
            self._hook = asyncio.create_task(self._after_established())
        return True

    async def _after_established(self) -> None:
        assert self.server.on_established is not None and self.phone is not None
        try:
            await self.server.on_established(self.phone, self)
        except (SessionError, LinkClosed):
            return
        except Exception as exc:
            log.error("on_established_failed", phone=self.phone, error=type(exc).__name__)

    def _refuse(self, conn: BoxConnection, code: ErrorCode, why: str) -> bool:
        self.server.stats.refused += 1
        log.info("phone_refused", code=code.name, reason=why)
        conn.refuse(code, self.server.clock())  # an encrypted ERROR record, as long as ACCEPT
        return False

    async def flush_quietly(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until what the connection queued, e.g. an ERROR, is on the link."""
        if self.driver is None:
            return
        with contextlib.suppress(SessionError, LinkClosed, TimeoutError):
            async with asyncio.timeout(timeout):
                await self.driver.flush()

    async def end_quietly(self, code: ErrorCode) -> None:
        """End the session now with `code` (encrypted once keys exist); errors are ignored."""
        if self.conn is not None:
            self.conn.abort(code, self.server.clock())
            await self.flush_quietly()

    async def send_app(self, message: app.AppMessage) -> None:
        """Queue one application message and wait until it is on the link (responder tasks)."""
        assert self.conn is not None and self.driver is not None
        self.conn.send_message(app.encode(message), self.server.clock())
        await self.driver.flush()

    def _queue_app(self, message: app.AppMessage) -> None:
        """Queue a reply from the receive loop; the writer task sends it."""
        assert self.conn is not None
        self.conn.send_message(app.encode(message), self.server.clock())

    def _on_app(self, payload: bytes) -> None:
        try:
            msg = app.decode(payload)
        except app.MessageError as exc:
            self._queue_app(app.Error(code=exc.kind, message=str(exc), id=exc.request_id))
            return
        match msg:
            case app.Prompt():
                self._on_prompt(msg)
            case app.Cancel(id=rid):
                task = self._requests.get(rid)
                if task is not None:
                    task.cancel()
            case app.Ping(nonce=nonce):
                self._queue_app(app.Pong(nonce=nonce))
            case _:
                self._queue_app(
                    app.Error(
                        code=app.ErrorKind.invalid_message, message="message type not accepted by the box"
                    )
                )

    def _on_prompt(self, prompt: app.Prompt) -> None:
        if self.server.draining:
            self._queue_app(
                app.Error(
                    code=app.ErrorKind.busy,
                    message="the box is restarting; ask again in a moment",
                    id=prompt.id,
                    retry_after_s=DRAINING_RETRY_AFTER_S,
                )
            )
            return
        if prompt.id in self._requests:
            self._queue_app(
                app.Error(
                    code=app.ErrorKind.duplicate_id, message="a request with this id is running", id=prompt.id
                )
            )
            return
        if len(self._requests) >= MAX_INFLIGHT_PROMPTS:
            self._queue_app(
                app.Error(code=app.ErrorKind.busy, message="too many requests in flight", id=prompt.id)
            )
            return
        self.server.stats.prompts += 1
        task = asyncio.create_task(self._answer(prompt), name=f"prompt {prompt.id}")
        self._requests[prompt.id] = task
        task.add_done_callback(functools.partial(self._forget, prompt.id))

    def _forget(self, request_id: str, _task: asyncio.Task[None]) -> None:
        self._requests.pop(request_id, None)

    async def _answer(self, prompt: app.Prompt) -> None:
        ctx = RequestContext(phone_id=self.phone or "", trace=prompt.trace)
        log.info("prompt_started", phone=self.phone, request=prompt.id, trace=prompt.trace)
        stream = _DeltaStream(self.server.responder.respond(prompt, ctx))
        seq = 0
        try:
            # Deltas that arrive while the previous chunk is still going out over the link are sent
            # together: a token-by-token LLM stream costs one record per link turn, not per token,
            # and there is no added latency when the link is idle.
            async for text in stream.batches():
                await self.send_app(app.Chunk(id=prompt.id, seq=seq, delta=text))
                seq += 1
            await self.send_app(stream.done or app.Done(id=prompt.id, trace=prompt.trace))
        except asyncio.CancelledError:
            with contextlib.suppress(SessionError, LinkClosed):
                await self.send_app(app.Done(id=prompt.id, finish_reason="cancelled", trace=prompt.trace))
        except (SessionError, LinkClosed):
            return
        except app.MessageError as exc:
            with contextlib.suppress(SessionError, LinkClosed):
                await self.send_app(
                    app.Error(code=exc.kind, message=str(exc), id=prompt.id, retry_after_s=exc.retry_after_s)
                )
        except Exception as exc:
            log.error("responder_failed", phone=self.phone, request=prompt.id, error=type(exc).__name__)
            with contextlib.suppress(SessionError, LinkClosed):
                await self.send_app(
                    app.Error(code=app.ErrorKind.internal, message="internal error", id=prompt.id)
                )
        finally:
            await stream.close()
        log.info("prompt_finished", phone=self.phone, request=prompt.id, chunks=seq)

    async def stop(self) -> None:
        if self._hook is not None:
            self._hook.cancel()
            await asyncio.gather(self._hook, return_exceptions=True)
        for task in list(self._requests.values()):
            task.cancel()
        await asyncio.gather(*self._requests.values(), return_exceptions=True)
        if self.driver is not None:
            await self.driver.close()
