"""Async driver that runs the sans-I/O framer over a `DatagramLink`.

Theory of operation: one reader task owns `link.recv()`. It feeds each datagram to the `Framer`,
appends completed messages to an inbox and immediately sends whatever the framer now allows (acks,
more fragments of queued messages). The reader never waits for the application: acks for our own
fragments are processed whatever the application does, so a sender blocked on a full window is
always released by the peer's acks (v1's reader blocked on a full inbound queue, stopped reading
acks, and a box with a full send window deadlocked against a phone sending pings). Back-pressure
is kept by withholding *our* acks instead: when `recv_queue` messages wait unread the framer's
`hold_acks` is set, the peer's sender stops at its window (so at most one window of fragments is
buffered), and the first `recv()` that makes room releases the acks.

Writers call `send(message)`: the message is queued in the framer and as many fragments go out as
the peer's window permits; when the window is full the writer waits until the reader has processed
an ack. A fragment unacknowledged for `ack_timeout_s`, a framing error or link loss fails the
channel; every waiter then gets the error. A box that shares no protocol version with the phone
still sends its capabilities answer (`Framer.take_refusal`) before the link closes. All limits come
from the `SessionConfig`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from edgebox.session.config import DEFAULT_CONFIG, SessionConfig
from edgebox.session.errors import ErrorCode, RemoteProtocolError, SessionError
from edgebox.session.framing import Framer, FramerState, Role
from edgebox.transport.base import DatagramLink, LinkClosed


class FramedChannel:
    def __init__(self, link: DatagramLink, role: Role, config: SessionConfig = DEFAULT_CONFIG) -> None:
        self.link = link
        self.config = config
        self.framer = Framer(role, mtu=min(link.mtu, 512), window=config.window)
        self._inbox: deque[bytes] = deque()
        self._arrived = asyncio.Event()
        self._progress = asyncio.Condition()
        self._send_lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._opened = asyncio.Event()

    @property
    def error(self) -> BaseException | None:
        return self._error

    @property
    def capabilities(self) -> bytes:
        """The capabilities exchange (request | response): the handshake transcript's first bytes."""
        return self.framer.capabilities

    async def open(self) -> None:
        """Run the capabilities exchange (the phone starts it) and start the reader."""
        if self.framer.role is Role.phone:
            await self.link.send(self.framer.start())
        self._reader = asyncio.create_task(self._read_loop(), name=f"framer-reader {self.link.peer}")
        try:
            async with asyncio.timeout(self.config.open_timeout_s):
                await self._opened.wait()
        except TimeoutError:
            await self.abort(RemoteProtocolError(ErrorCode.timeout, "capabilities exchange timed out"))
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    async def abort(self, exc: BaseException) -> None:
        """Fail the channel with `exc`: every waiter (send, recv, open) gets it."""
        if self._error is None:
            self._error = exc
        self._opened.set()
        self._arrived.set()
        async with self._progress:
            self._progress.notify_all()

    async def _read_loop(self) -> None:
        try:
            while True:
                datagram = await self.link.recv()
                messages = self.framer.receive_datagram(datagram)
                if self.framer.is_open:
                    self._opened.set()
                if messages:
                    self._inbox.extend(messages)
                    self._arrived.set()
                    if len(self._inbox) >= self.config.recv_queue:
                        self.framer.hold_acks = True
                await self._flush()
                async with self._progress:
                    self._progress.notify_all()
        except SessionError as exc:
            with contextlib.suppress(Exception):
                for datagram in self.framer.take_refusal():
                    await self.link.send(datagram)
            await self.abort(exc)
        except LinkClosed as exc:
            await self.abort(exc)
        except asyncio.CancelledError:
            await self.abort(LinkClosed("channel closed"))
            raise
        except Exception as exc:  # a transport bug must not leave waiters hanging
            await self.abort(LinkClosed(f"transport failed: {type(exc).__name__}"))

    async def _flush(self) -> None:
        async with self._send_lock:
            if self.framer.state is FramerState.failed:
                return
            for datagram in self.framer.datagrams_to_send():
                await self.link.send(datagram)

    async def send(self, message: bytes) -> None:
        """Queue one message and wait until all of it has been handed to the link."""
        self._raise_if_failed()
        self.framer.send_message(message)
        while True:
            await self._flush()
            self._raise_if_failed()
            if self.framer.queued_bytes == 0:
                return
            async with self._progress:
                if self._error is None and self.framer.in_flight >= self.framer.peer_window:
                    try:
                        async with asyncio.timeout(self.config.ack_timeout_s):
                            await self._progress.wait()
                    except TimeoutError:
                        self._error = self._error or RemoteProtocolError(
                            ErrorCode.timeout, "peer stopped acknowledging"
                        )
                        self._arrived.set()
                        self._progress.notify_all()
            self._raise_if_failed()

    async def recv(self) -> bytes:
        """The next complete message; raises the channel's error once it has failed and the
        messages that arrived before the failure have been read."""
        while not self._inbox:
            if self._error is not None:
                raise self._error
            self._arrived.clear()
            await self._arrived.wait()
        message = self._inbox.popleft()
        if self.framer.hold_acks and len(self._inbox) < self.config.recv_queue and self._error is None:
            self.framer.hold_acks = False
            await self._flush()  # the acks we withheld
        return message

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self.link.close()
