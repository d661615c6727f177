"""The box's session server: one task per phone link, from framing to application messages.

Theory of operation: `BoxServer.serve(listener)` accepts links from any transport (loopback, BLE)
and runs `handle_link` for each. A link first runs the framing capabilities exchange, then the
sans-I/O `BoxConnection` handshake; the server answers its events from the `PhoneRegistry`
(pairing psk lookups count attempts; pairing completes atomically; unknown or revoked phones are
refused with a typed error). Once established, each DATA record is decoded as an application
message: a `prompt` starts a responder task whose deltas stream back as `chunk`s and end with one
`done` (or `error`); `cancel` cancels it; `ping` gets `pong`. An invalid application message gets a
typed `error` and the session goes on; a protocol error (replay, tamper, bad frame) ends that link
only. Log lines carry the phone id, session id and trace id, never text or keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from edgebox.box.identity import BoxIdentity
from edgebox.box.registry import PairingOutcome, PhoneRegistry, PhoneStatus
from edgebox.box.responder import RequestContext, Responder
from edgebox.log import get_logger
from edgebox.session import messages as app
from edgebox.session.connection import (
    BoxConnection,
    MessageReceived,
    PairingSecretRequested,
    PeerClosed,
    PeerError,
    PhoneAuthenticated,
    phone_id,
)
from edgebox.session.errors import ErrorCode, SessionError
from edgebox.session.framing import DEFAULT_WINDOW, Role
from edgebox.transport.base import DatagramLink, LinkClosed, LinkListener
from edgebox.transport.channel import FramedChannel

log = get_logger("edgebox.box.server")

HANDSHAKE_TIMEOUT_S = 30.0
MAX_INFLIGHT_PROMPTS = 4


@dataclass
class ServerStats:
    links: int = 0
    sessions: int = 0
    pairings: int = 0
    refused: int = 0
    pairing_failures: int = 0
    protocol_errors: int = 0
    prompts: int = 0


class BoxServer:
    def __init__(
        self,
        identity: BoxIdentity,
        registry: PhoneRegistry,
        responder: Responder,
        *,
        window: int = DEFAULT_WINDOW,
        handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
    ) -> None:
        self.identity = identity
        self.registry = registry
        self.responder = responder
        self.window = window
        self.handshake_timeout = handshake_timeout
        self.stats = ServerStats()
        self._tasks: set[asyncio.Task[None]] = set()
        self._live: dict[_LinkSession, asyncio.Task[Any]] = {}  # every running link, by its session

    async def serve(self, listener: LinkListener) -> None:
        """Accept links until cancelled; each link runs in its own task."""
        try:
            while True:
                link = await listener.accept()
                task = asyncio.create_task(self.handle_link(link), name=f"box-link {link.peer}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def handle_link(self, link: DatagramLink) -> None:
        self.stats.links += 1
        channel = FramedChannel(link, Role.box, window=self.window)
        session = _LinkSession(self, channel)
        task = asyncio.current_task()
        if task is not None:
            self._live[session] = task
        try:
            await session.run()
        except (SessionError, TimeoutError) as exc:
            self.stats.protocol_errors += 1
            code = exc.code if isinstance(exc, SessionError) else "timeout"
            log.warning("session_failed", peer=link.peer, phone=session.phone, code=code)
            await self._count_pairing_failure(session)  # before the peer hears of it: no race
            await session.flush_quietly()
        except LinkClosed:
            log.info("link_closed", peer=link.peer, phone=session.phone)
        finally:
            self._live.pop(session, None)
            await self._count_pairing_failure(session)
            await session.stop()
            await channel.close()

    def connected_phones(self) -> dict[str, int]:
        """Phone id -> number of established sessions right now."""
        counts: dict[str, int] = {}
        for session in self._live:
            if session.phone is not None and session.conn.established:
                counts[session.phone] = counts.get(session.phone, 0) + 1
        return counts

    async def drop_phone(self, phone_id: str) -> int:
        """End every live link of a phone at once (after a revoke): an authenticated CLOSE where a
        session is established, then the link task is cancelled. Returns how many links were dropped."""
        victims = [(s, t) for s, t in list(self._live.items()) if s.phone == phone_id]
        for session, task in victims:
            await session.close_quietly()
            task.cancel()
        await asyncio.gather(*(t for _, t in victims), return_exceptions=True)
        if victims:
            log.info("phone_dropped", phone=phone_id, links=len(victims))
        return len(victims)

    async def _count_pairing_failure(self, session: _LinkSession) -> None:
        """A pairing that got the secret's psk but did not complete counts as one failed attempt."""
        secret_id, session.pairing_pending = session.pairing_pending, None
        if secret_id is not None:
            self.stats.pairing_failures += 1
            await asyncio.to_thread(self.registry.pairing_failed, secret_id, time.time())


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
        self.conn = BoxConnection(server.identity.private_key)
        self.phone: str | None = None
        self._secret_id: bytes | None = None
        self.pairing_pending: bytes | None = None  # secret id of a pairing not yet completed
        self._requests: dict[str, asyncio.Task[None]] = {}
        self._send_lock = asyncio.Lock()

    async def run(self) -> None:
        await self.channel.open()
        async with asyncio.timeout(self.server.handshake_timeout):
            while not self.conn.established:
                if not await self._step():
                    return
        while True:
            if not await self._step():
                return

    async def _step(self) -> bool:
        data = await self.channel.recv()
        events = self.conn.receive_message(data, time.monotonic())
        keep_going = True
        for event in events:
            match event:
                case PairingSecretRequested(secret_id=sid):
                    self._secret_id = sid
                    psk = await asyncio.to_thread(self.server.registry.pairing_psk, sid, time.time())
                    if psk is not None:
                        self.pairing_pending = sid
                    self.conn.provide_secret(psk)
                case PhoneAuthenticated(phone_key=key, pairing=pairing):
                    await self._decide(key, pairing)
                case MessageReceived(payload=payload):
                    await self._on_app(payload)
                case PeerClosed():
                    keep_going = False
                case PeerError(code=code):
                    log.info("peer_error", phone=self.phone, code=code.name)
                    keep_going = False
        await self._flush()
        return keep_going

    async def _decide(self, key: bytes, pairing: bool) -> None:
        registry = self.server.registry
        self.phone = phone_id(key)
        now = time.time()
        if pairing:
            assert self._secret_id is not None
            outcome = await asyncio.to_thread(registry.complete_pairing, self._secret_id, key, now)
            self.pairing_pending = None  # completed, or already used by another phone: not a guess
            if outcome is not PairingOutcome.enrolled:
                code = (
                    ErrorCode.phone_revoked
                    if outcome is PairingOutcome.revoked
                    else ErrorCode.pairing_secret_invalid
                )
                self.server.stats.refused += 1
                self.conn.refuse(code)
                await self._flush()
                raise SessionError(code, f"pairing refused ({outcome.value})")
            self.server.stats.pairings += 1
            log.info("phone_paired", phone=self.phone)
        else:
            status = await asyncio.to_thread(registry.phone_status, key)
            if status is not PhoneStatus.enrolled:
                code = ErrorCode.phone_revoked if status is PhoneStatus.revoked else ErrorCode.phone_unknown
                self.server.stats.refused += 1
                self.conn.refuse(code)
                await self._flush()
                raise SessionError(code, f"phone refused ({status.value})")
        self.conn.accept(time.monotonic())
        self.server.stats.sessions += 1
        log.info("session_established", phone=self.phone, session=self.conn.session_id.hex(), pairing=pairing)

    async def _flush(self) -> None:
        async with self._send_lock:
            for message in self.conn.data_to_send():
                await self.channel.send(message)

    async def close_quietly(self) -> None:
        """Queue and send an authenticated CLOSE (when established); errors are ignored."""
        with contextlib.suppress(SessionError, LinkClosed):
            async with self._send_lock:
                self.conn.close(time.monotonic())
                for data in self.conn.data_to_send():
                    await self.channel.send(data)

    async def flush_quietly(self) -> None:
        with contextlib.suppress(SessionError, LinkClosed):
            await self._flush()

    async def send_app(self, message: app.AppMessage) -> None:
        async with self._send_lock:
            self.conn.send_message(app.encode(message), time.monotonic())
            for data in self.conn.data_to_send():
                await self.channel.send(data)

    async def _on_app(self, payload: bytes) -> None:
        try:
            msg = app.decode(payload)
        except app.MessageError as exc:
            await self._queue_app(app.Error(code=exc.kind, message=str(exc), id=exc.request_id))
            return
        match msg:
            case app.Prompt():
                await self._on_prompt(msg)
            case app.Cancel(id=rid):
                task = self._requests.get(rid)
                if task is not None:
                    task.cancel()
            case app.Ping(nonce=nonce):
                await self._queue_app(app.Pong(nonce=nonce))
            case _:
                await self._queue_app(
                    app.Error(
                        code=app.ErrorKind.invalid_message, message="message type not accepted by the box"
                    )
                )

    async def _queue_app(self, message: app.AppMessage) -> None:
        # Called from inside _step (the connection is not shared with another writer then).
        self.conn.send_message(app.encode(message), time.monotonic())

    async def _on_prompt(self, prompt: app.Prompt) -> None:
        if prompt.id in self._requests:
            await self._queue_app(
                app.Error(
                    code=app.ErrorKind.duplicate_id, message="a request with this id is running", id=prompt.id
                )
            )
            return
        if len(self._requests) >= MAX_INFLIGHT_PROMPTS:
            await self._queue_app(
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
        for task in list(self._requests.values()):
            task.cancel()
        await asyncio.gather(*self._requests.values(), return_exceptions=True)
