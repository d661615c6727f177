"""The reference phone client (async), over any `DatagramLink`.

Theory of operation: `pair(link, invite)` and `connect(link, box)` run the framing exchange and the
sans-I/O `PhoneConnection` handshake and return a `PhoneSession`. A `SessionDriver` writes what the
connection queues and drives its clock (the one handshake deadline, then rekeys and keep-alives),
so a session idle for hours still works. The session owns one dispatcher task that always drains
the channel (so the box is never blocked by a slow reader) and routes each application message to
the request it belongs to by id. `ask()` sends a `prompt` and yields the
streamed text; the final `done` is available as `Answer.done`. Box-side `error`s raise `AppError`
with the typed code; protocol failures and refusals raise `RemoteProtocolError`; link loss raises
`LinkClosed`. All limits come from one `SessionConfig`.
Answers to requests the box queued (finish_reason "queued") arrive later as unsolicited `chunk`s and
a `done` with the original id, or as an `error` with that id (the request expired in the box's
queue, or the gateway refused it); each is put on `PhoneSession.deliveries` as one `Answer`. An
unsolicited `error` counts as such an answer only for an id this session saw queued (or listed in
`awaiting`, e.g. ids a phone kept from an earlier session), as the web phone does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from edgebox.errors import EdgeboxError
from edgebox.phone.keystore import PairedBox, PhoneKeystore
from edgebox.schema.chat import ChatMessage, Role
from edgebox.session import messages as app
from edgebox.session.config import DEFAULT_CONFIG, SessionConfig
from edgebox.session.connection import MessageReceived, PeerClosed, PeerError, PhoneConnection
from edgebox.session.errors import ErrorCode, RemoteProtocolError, SessionError
from edgebox.session.framing import Role as FramingRole
from edgebox.session.invite import InviteError, PairingInvite
from edgebox.transport.base import DatagramLink, LinkClosed
from edgebox.transport.channel import FramedChannel
from edgebox.transport.driver import SessionDriver

_ids = itertools.count(1)


class AppError(EdgeboxError):
    """The box answered a request with a typed application error."""

    def __init__(self, error: app.Error) -> None:
        super().__init__(error.message, code=error.code.value)
        self.error = error


@dataclass
class Answer:
    request_id: str
    chunks: list[str] = field(default_factory=list)
    done: app.Done | None = None
    error: app.Error | None = None  # a queued request that ended in an error (delivered later)

    @property
    def text(self) -> str:
        return "".join(self.chunks)


async def _handshake(
    link: DatagramLink,
    make: Callable[[bytes], PhoneConnection],
    config: SessionConfig,
) -> tuple[FramedChannel, PhoneConnection, SessionDriver]:
    channel = FramedChannel(link, FramingRole.phone, config)
    driver: SessionDriver | None = None
    try:
        await channel.open()
        conn = make(channel.capabilities)
        driver = SessionDriver(channel, conn)
        conn.start(driver.clock())
        driver.start()
        while not conn.established:
            data = await channel.recv()  # the handshake deadline fails the channel (timeout)
            events = conn.receive_message(data, driver.clock())
            driver.kick()
            for event in events:
                if isinstance(event, PeerError):
                    raise RemoteProtocolError(event.code, f"box refused the session ({event.code.name})")
        await driver.flush()
    except BaseException:
        # Tell the box why, if we can, then drop the link.
        if driver is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await driver.flush()
            await driver.close()
        await channel.close()
        raise
    return channel, conn, driver


async def pair(
    link: DatagramLink,
    keystore: PhoneKeystore,
    invite: PairingInvite,
    *,
    config: SessionConfig = DEFAULT_CONFIG,
) -> PhoneSession:
    """Pair with the box named by `invite` (from its QR code) and return the open session."""
    if invite.expired(time.time()):
        raise InviteError("pairing code has expired; show a new one on the box", code="invite_expired")

    def make(caps: bytes) -> PhoneConnection:
        return PhoneConnection(
            keystore.identity,
            invite.box_key_hash,
            capabilities=caps,
            config=config,
            pairing_secret=(invite.secret_id, invite.secret),
        )

    channel, conn, driver = await _handshake(link, make, config)
    keystore.remember(PairedBox(invite.box_id.hex(), invite.box_key_hash, int(time.time())))
    return PhoneSession(channel, conn, driver)


async def connect(
    link: DatagramLink,
    keystore: PhoneKeystore,
    box: PairedBox,
    *,
    config: SessionConfig = DEFAULT_CONFIG,
) -> PhoneSession:
    """Open an authenticated session with a box this phone paired with before."""

    def make(caps: bytes) -> PhoneConnection:
        return PhoneConnection(keystore.identity, box.key_hash, capabilities=caps, config=config)

    channel, conn, driver = await _handshake(link, make, config)
    return PhoneSession(channel, conn, driver)


class PhoneSession:
    def __init__(self, channel: FramedChannel, conn: PhoneConnection, driver: SessionDriver) -> None:
        self.channel = channel
        self.conn = conn
        self.driver = driver
        self._routes: dict[str, asyncio.Queue[app.AppMessage | BaseException]] = {}
        self._pongs: dict[int, asyncio.Future[None]] = {}
        self._error: BaseException | None = None
        # Answers to earlier requests the box queued (finish_reason "queued"), delivered later.
        self.deliveries: asyncio.Queue[Answer] = asyncio.Queue()
        self._late: dict[str, Answer] = {}
        # Ids the box queued: an unsolicited `error` with one of these ids is a late answer.
        self.awaiting: set[str] = set()
        self._dispatcher = asyncio.create_task(self._dispatch(), name="phone-dispatch")

    @property
    def session_id(self) -> bytes:
        return self.conn.session_id

    async def _dispatch(self) -> None:
        try:
            while True:
                data = await self.channel.recv()
                events = self.conn.receive_message(data, self.driver.clock())
                self.driver.kick()
                for event in events:
                    if isinstance(event, MessageReceived):
                        self._route(app.decode(event.payload))
                    elif isinstance(event, PeerClosed):
                        raise LinkClosed("box closed the session")
                    elif isinstance(event, PeerError):
                        raise RemoteProtocolError(event.code, f"box ended the session ({event.code.name})")
        except (SessionError, LinkClosed, app.MessageError) as exc:
            self._error = exc
        except asyncio.CancelledError:
            self._error = LinkClosed("session closed")
        for q in self._routes.values():
            q.put_nowait(self._error or LinkClosed("session closed"))
        for fut in self._pongs.values():
            if not fut.done():
                fut.set_exception(self._error or LinkClosed("session closed"))

    def _route(self, msg: app.AppMessage) -> None:
        if isinstance(msg, app.Pong):
            fut = self._pongs.pop(msg.nonce, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
            return
        rid = getattr(msg, "id", None)
        queue = self._routes.get(rid) if isinstance(rid, str) else None
        if queue is None and isinstance(rid, str) and isinstance(msg, app.Chunk | app.Done):
            late = self._late.setdefault(rid, Answer(request_id=rid))  # a queued answer, delivered now
            if isinstance(msg, app.Chunk):
                late.chunks.append(msg.delta)
            else:
                late.done = msg
                self.awaiting.discard(rid)
                self.deliveries.put_nowait(self._late.pop(rid))
            return
        awaited = isinstance(rid, str) and (rid in self.awaiting or rid in self._late)
        if queue is None and isinstance(msg, app.Error) and isinstance(rid, str) and awaited:
            late = self._late.pop(rid) if rid in self._late else Answer(request_id=rid)
            late.error = msg
            self.awaiting.discard(rid)
            self.deliveries.put_nowait(late)
            return
        if queue is None:
            queue = self._routes.get("")  # errors about messages no request owns
        if queue is not None:
            queue.put_nowait(msg)

    async def _send(self, msg: app.AppMessage) -> None:
        if self._error is not None:
            raise self._error
        self.conn.send_message(app.encode(msg), self.driver.clock())
        await self.driver.flush()

    async def ask_stream(
        self,
        messages: str | Sequence[ChatMessage],
        *,
        request_id: str | None = None,
        trace: str | None = None,
        max_tokens: int = 512,
        can_wait: bool = False,
    ) -> AsyncIterator[str | app.Done]:
        """Send a prompt; yield text deltas, then the final `Done`."""
        if isinstance(messages, str):
            messages = [ChatMessage(role=Role.user, content=messages)]
        # Random suffix: an answer the box queued for an earlier process must never meet a new request.
        rid = request_id or f"r{next(_ids)}-{os.urandom(4).hex()}"
        queue: asyncio.Queue[app.AppMessage | BaseException] = asyncio.Queue()
        self._routes[rid] = queue
        try:
            prompt = app.Prompt(
                id=rid,
                messages=list(messages),
                trace=trace,
                options=app.Options(max_tokens=max_tokens, can_wait=can_wait),
            )
            await self._send(prompt)
            expected = 0
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, app.Chunk):
                    if item.seq != expected:
                        raise SessionError(ErrorCode.unexpected_message, "chunk out of order")
                    expected += 1
                    yield item.delta
                elif isinstance(item, app.Done):
                    if item.finish_reason == "queued":
                        self.awaiting.add(rid)
                    yield item
                    return
                elif isinstance(item, app.Error):
                    raise AppError(item)
        finally:
            self._routes.pop(rid, None)

    async def ask(self, messages: str | Sequence[ChatMessage], **kwargs: object) -> Answer:
        answer = Answer(request_id="")
        async for item in self.ask_stream(messages, **kwargs):  # type: ignore[arg-type]
            if isinstance(item, app.Done):
                answer.done = item
                answer.request_id = item.id
            else:
                answer.chunks.append(item)
        return answer

    async def cancel(self, request_id: str) -> None:
        await self._send(app.Cancel(id=request_id))

    async def ping(self, timeout: float = 10.0) -> None:
        nonce = next(_ids)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs[nonce] = fut
        await self._send(app.Ping(nonce=nonce))
        async with asyncio.timeout(timeout):
            await fut

    async def send_raw(self, payload: bytes) -> None:
        """Send arbitrary bytes as one DATA record (tests: invalid application messages)."""
        self.conn.send_message(payload, self.driver.clock())
        await self.driver.flush()

    async def next_unrouted_error(self, timeout: float = 10.0) -> app.Error:
        """Wait for an `error` without a request id (answer to an invalid message)."""
        queue: asyncio.Queue[app.AppMessage | BaseException] = asyncio.Queue()
        self._routes[""] = queue
        try:
            async with asyncio.timeout(timeout):
                while True:
                    item = await queue.get()
                    if isinstance(item, BaseException):
                        raise item
                    if isinstance(item, app.Error):
                        return item
        finally:
            self._routes.pop("", None)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close(self.driver.clock())
            async with asyncio.timeout(2.0):
                await self.driver.flush()
        await self.driver.close()
        self._dispatcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._dispatcher
        await self.channel.close()

    async def __aenter__(self) -> PhoneSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
