"""Using the (synchronous) store from asyncio.

Theory of operation: all store I/O is synchronous SQLite. The event loop must never run it
directly (an fsync on an SD card can take tens of milliseconds). `StoreWorker` owns one dedicated
thread and runs every call there, in order: a single writer thread means no lock contention
inside the store and FIFO ordering of the box's writes. `asyncio.to_thread(store.x, ...)` is also
safe (the store serialises on its lock), but uses the default pool.

    worker = StoreWorker(store)
    hit = await worker.call(store.cache.lookup, embedding, model="m")
    ...
    await worker.aclose()          # waits for queued calls, then closes the store

`run_purge_loop` runs `store.purge()` periodically on the worker.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from edgebox.log import get_logger
from edgebox.store.errors import StoreClosedError
from edgebox.store.store import Store

P = ParamSpec("P")
T = TypeVar("T")
log = get_logger(__name__)


class StoreWorker:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgebox-store")
        self._closed = False

    async def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        if self._closed:
            raise StoreClosedError("the store worker is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.store.close)
        self._executor.shutdown(wait=True)


async def run_purge_loop(worker: StoreWorker, *, interval_s: float = 3600.0) -> None:
    """Purge now and then every `interval_s` seconds, until cancelled."""
    while True:
        report = await worker.call(worker.store.purge)
        log.info("store_purge_done", prompt_log_deleted=report.prompt_log_deleted)
        await asyncio.sleep(interval_s)
