"""Running the injection classifier for concurrent requests: one batch per event-loop turn.

Theory of operation: the rule classifier costs microseconds and runs inline. A trained model costs
milliseconds per call but little more per extra text in the same call, so `BatchingScorer` collects
the texts of every request that asks within one event-loop turn, sends the distinct ones to the model
in a single call on a worker thread (behind the `CachedClassifier` memo, so a repeated system prompt
or conversation history is not scored again), and hands each request its own scores. The event loop
never blocks on the model.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Sequence

from edgebox.pipeline.classifier import Classifier

MAX_BATCH_TEXTS = 256


class BatchingScorer:
    def __init__(
        self,
        classifier: Classifier,
        pool: concurrent.futures.Executor | None,
        on_batch: Callable[[float], None] = lambda s: None,
    ) -> None:
        self.classifier = classifier
        self._pool = pool
        self._pending: list[tuple[Sequence[str], asyncio.Future[list[float]]]] = []
        self._scheduled = False
        self._on_batch = on_batch
        self.batches = 0
        self._tasks: set[asyncio.Future[None]] = set()

    async def score(self, texts: Sequence[str]) -> list[float]:
        if self._pool is None:
            return self.classifier.score(texts)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[float]] = loop.create_future()
        self._pending.append((texts, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _timed(self, texts: list[str]) -> list[float]:
        t0 = time.perf_counter()
        try:
            return self.classifier.score(texts)
        finally:
            self._on_batch(time.perf_counter() - t0)

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        while pending:
            batch: list[tuple[Sequence[str], asyncio.Future[list[float]]]] = []
            n = 0
            while pending and (not batch or n + len(pending[0][0]) <= MAX_BATCH_TEXTS):
                item = pending.pop(0)
                batch.append(item)
                n += len(item[0])
            task = asyncio.ensure_future(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[Sequence[str], asyncio.Future[list[float]]]]) -> None:
        distinct: dict[str, int] = {}
        for texts, _ in batch:
            for t in texts:
                distinct.setdefault(t, len(distinct))
        loop = asyncio.get_running_loop()
        try:
            scores = await loop.run_in_executor(self._pool, self._timed, list(distinct))
        except Exception as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self.batches += 1
        for texts, fut in batch:
            if not fut.done():
                fut.set_result([scores[distinct[t]] for t in texts])
