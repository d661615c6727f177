"""Drives one sans-I/O session connection over a `FramedChannel`: a writer task with a clock.

Theory of operation: the connection (`edgebox.session.connection`) queues the messages it wants to
send and says when it next needs the clock (`next_deadline()`); it never does I/O. The
`SessionDriver` owns one task that does both halves of "driven by the transport" (the aioquic way):

* it hands everything the connection queued to the channel, in order, and counts what went out,
  so `flush()` can wait until a given record is on the link (which is what lets the box coalesce
  streamed deltas while the link is busy);
* when nothing is queued it sleeps until the connection's next deadline and calls
  `handle_timer(now)` then: the handshake deadline before the session is established, the rekey
  and keep-alive once it is. An idle session therefore rekeys on time and lives for any length.

The owner's receive loop never sends: it feeds `receive_message` and calls `kick()`. So a reply
produced while the send window is full waits in the writer, and the loop goes on reading (acks
are read by the channel regardless). `wait_backlog(n)` lets a receive loop stop taking new work
while more than `n` messages wait to be written, bounding memory against a peer that floods
requests but never acknowledges the answers (it then fails on the channel's ack timeout).

If the connection fails on its timer (handshake timeout) or the channel fails, the driver aborts
the channel with that error, so the owner's `channel.recv()` raises it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from typing import Protocol

from edgebox.session.errors import SessionError
from edgebox.transport.base import LinkClosed
from edgebox.transport.channel import FramedChannel


class DrivenConnection(Protocol):
    @property
    def queued(self) -> int: ...

    def data_to_send(self) -> list[bytes]: ...

    def next_deadline(self) -> float: ...

    def handle_timer(self, now: float) -> None: ...


class SessionDriver:
    def __init__(
        self,
        channel: FramedChannel,
        conn: DrivenConnection,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channel = channel
        self.conn = conn
        self.clock = clock
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._taken = 0  # messages taken from the connection
        self._sent = 0  # messages handed to the channel
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"session-writer {self.channel.link.peer}")

    def kick(self) -> None:
        """The connection queued something (or its deadline moved): look again."""
        self._wake.set()

    @property
    def backlog(self) -> int:
        return self._taken + self.conn.queued - self._sent

    async def flush(self) -> None:
        """Wait until everything the connection has queued so far is on the link."""
        target = self._taken + self.conn.queued
        self.kick()
        async with self._progress:
            await self._progress.wait_for(lambda: self._sent >= target or self.error is not None)
        if self.error is not None:
            raise self.error

    async def wait_backlog(self, limit: int) -> None:
        """Wait while more than `limit` messages wait to be written."""
        async with self._progress:
            await self._progress.wait_for(lambda: self.backlog <= limit or self.error is not None)

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    async def _run(self) -> None:
        try:
            while True:
                self._wake.clear()
                out = self.conn.data_to_send()
                if out:
                    self._taken += len(out)
                    for message in out:
                        await self.channel.send(message)
                        self._sent += 1
                    await self._notify()
                    continue
                deadline = self.conn.next_deadline()
                if math.isinf(deadline):
                    await self._wake.wait()
                    continue
                delay = deadline - self.clock()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._wake.wait()
                    continue
                self.conn.handle_timer(self.clock())
        except (SessionError, LinkClosed) as exc:
            self.error = exc
            with contextlib.suppress(Exception):  # say why, if the link still takes it
                for message in self.conn.data_to_send():
                    await self.channel.send(message)
            await self.channel.abort(exc)
            await self._notify()
        except asyncio.CancelledError:
            self.error = self.error or LinkClosed("session closed")
            await self._notify()
            raise

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
