"""Async driver that runs the sans-I/O framer over a `DatagramLink`.

Theory of operation: one reader task owns `link.recv()`; it feeds each datagram to the `Framer`,
puts completed messages on a bounded queue and immediately sends whatever the framer now allows
(acks, more fragments of queued messages). Writers call `send(message)`: the message is queued in
the framer and as many fragments go out as the peer's window permits; when the window is full the
writer waits until the reader has processed an ack. Back-pressure is therefore end to end: if the
application stops calling `recv()`, the queue fills, the reader stops reading, stops acking, and
the peer's sender blocks at its window. A fragment that stays unacknowledged for `ack_timeout`
seconds, a framing error or link loss fails the channel; every waiter then gets the error.
"""

from __future__ import annotations

import asyncio
import contextlib

from edgebox.session.errors import ErrorCode, SessionError
from edgebox.session.framing import DEFAULT_WINDOW, Framer, Role
from edgebox.transport.base import DatagramLink, LinkClosed

ACK_TIMEOUT_S = 15.0
OPEN_TIMEOUT_S = 15.0


class FramedChannel:
    def __init__(
        self,
        link: DatagramLink,
        role: Role,
        *,
        window: int = DEFAULT_WINDOW,
        recv_queue: int = 8,
        ack_timeout: float = ACK_TIMEOUT_S,
    ) -> None:
        self.link = link
        self.framer = Framer(role, mtu=min(link.mtu, 512), window=window)
        self._messages: asyncio.Queue[bytes] = asyncio.Queue(recv_queue)
        self._progress = asyncio.Condition()
        self._send_lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._opened = asyncio.Event()
        self._ack_timeout = ack_timeout

    @property
    def error(self) -> BaseException | None:
        return self._error

    async def open(self, timeout: float = OPEN_TIMEOUT_S) -> None:
        """Run the capabilities exchange (the phone starts it) and start the reader."""
        if self.framer.role is Role.phone:
            await self.link.send(self.framer.start())
        self._reader = asyncio.create_task(self._read_loop(), name=f"framer-reader {self.link.peer}")
        try:
            async with asyncio.timeout(timeout):
                await self._opened.wait()
        except TimeoutError:
            await self._fail(SessionError(ErrorCode.timeout, "capabilities exchange timed out"))
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    async def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._opened.set()
        async with self._progress:
            self._progress.notify_all()
        # Wake a recv() blocked on an empty queue.
        with contextlib.suppress(asyncio.QueueFull):
            self._messages.put_nowait(b"")

    async def _read_loop(self) -> None:
        try:
            while True:
                datagram = await self.link.recv()
                messages = self.framer.receive_datagram(datagram)
                if self.framer.is_open:
                    self._opened.set()
                # Deliver before acking: a peer that sends its last message and hangs up must
                # still have that message read, even though our ack can no longer be sent.
                for message in messages:
                    await self._messages.put(message)
                await self._flush()
                async with self._progress:
                    self._progress.notify_all()
        except (SessionError, LinkClosed) as exc:
            await self._fail(exc)
        except asyncio.CancelledError:
            await self._fail(LinkClosed("channel closed"))
            raise
        except Exception as exc:  # a transport bug must not leave waiters hanging
            await self._fail(LinkClosed(f"transport failed: {type(exc).__name__}"))

    async def _flush(self) -> None:
        async with self._send_lock:
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
                        async with asyncio.timeout(self._ack_timeout):
                            await self._progress.wait()
                    except TimeoutError:
                        await self._fail(SessionError(ErrorCode.timeout, "peer stopped acknowledging"))
            self._raise_if_failed()

    async def recv(self) -> bytes:
        """The next complete message; raises the channel's error once it has failed."""
        if self._error is not None and self._messages.empty():
            raise self._error
        message = await self._messages.get()
        if not message:
            assert self._error is not None
            raise self._error
        return message

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self.link.close()
