"""Micro-batching: requests from concurrent clients answered by one batched call on one thread.

The server's handlers run on the event loop; the model runs on a single worker thread (the
:class:`~deepm3.recommend.recommender.Recommender` is not thread-safe). :meth:`MicroBatcher.submit`
puts requests on a queue; one collector task takes the first waiting request, keeps collecting
until ``max_batch`` requests or ``max_wait_ms`` have passed, answers them with ONE call of
``answer_many`` on the worker thread, and hands each answer to its caller. While a batch runs,
new requests wait in the queue, so under load the batches grow by themselves.

:meth:`MicroBatcher.call` runs any other function (adding events, reading the cache for
``/health``) on the same worker thread, so it never overlaps a batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")
log = logging.getLogger("deepm3.serve")


class QueueFullError(Exception):
    """More requests are waiting than the server accepts (answer 503)."""


class InternalError(Exception):
    """An unexpected failure while answering one item (answer 500), returned in its place; the
    traceback is in the log."""


def one_line(error: BaseException) -> str:
    """``Type: message`` on a single line, at most 200 characters."""
    text = " ".join(str(error).split()) or "no message"
    return f"{type(error).__name__}: {text}"[:200]


class MicroBatcher(Generic[Item, Answer]):
    """Collects submitted items into batches for ``answer_many(items) -> answers`` (in order).

    ``on_batch(size, seconds)`` is told about every batch (for metrics). Start it with
    :meth:`start` inside a running event loop, end it with :meth:`stop`.
    """

    def __init__(
        self,
        answer_many: Callable[[list[Item]], Sequence[Answer]],
        *,
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
        max_queue: int = 10_000,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if max_batch < 1 or not 0 <= max_wait_ms <= 60_000 or max_queue < 1:  # NaN fails too
            raise ValueError(
                f"max_batch >= 1 (got {max_batch}), max_wait_ms from 0 to 60000 (got "
                f"{max_wait_ms}) and max_queue >= 1 (got {max_queue})"
            )
        self.answer_many, self.on_batch = answer_many, on_batch
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000, max_queue
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future]] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._collector: asyncio.Task | None = None

    @property
    def waiting(self) -> int:
        """Requests queued and not yet in a batch."""
        return 0 if self._queue is None else self._queue.qsize()

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepm3-model")
        self._collector = asyncio.create_task(self._collect_forever())

    async def stop(self) -> None:
        if self._collector is not None:
            self._collector.cancel()
            await asyncio.gather(self._collector, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        self._collector = self._executor = self._queue = None

    async def submit(self, items: Sequence[Item]) -> list[Answer | InternalError]:
        """The answers to ``items``, in order (an :class:`InternalError` for an item that failed
        unexpectedly); a list's items may land in different batches.

        Raises :class:`QueueFullError` when ``max_queue`` items are already waiting."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        if self._queue.qsize() + len(items) > self.max_queue:
            raise QueueFullError(f"{self._queue.qsize()} requests waiting; try again shortly")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        for item, future in zip(items, futures, strict=True):
            self._queue.put_nowait((item, future))
        return list(await asyncio.gather(*futures))

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` on the worker thread, never during a batch."""
        if self._executor is None:
            raise RuntimeError("the batcher is not started")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def _next_batch(self) -> list[tuple[Item, asyncio.Future]]:
        """The first waiting item, then whatever arrives within ``max_wait`` (up to
        ``max_batch``); items whose caller went away are dropped."""
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                if left <= 0 or not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                else:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
        return [(item, future) for item, future in batch if not future.done()]

    async def _collect_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            items = [item for item, _ in batch]
            started = time.perf_counter()
            answers = await loop.run_in_executor(self._executor, self._answer_safely, items)
            if self.on_batch is not None:
                self.on_batch(len(items), time.perf_counter() - started)
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():  # done: the caller went away meanwhile
                    future.set_result(answer)

    def _answer_safely(self, items: list[Item]) -> list[Answer | InternalError]:
        """One call for the batch; if it fails unexpectedly, each item alone, so only the item
        that fails gets an :class:`InternalError` (logged) and the others their answers."""
        try:
            return list(self.answer_many(items))
        except Exception:
            if len(items) == 1:
                log.exception("answering a request failed")
                return [InternalError("internal error while answering; see the server log")]
            log.warning("a batch of %d failed; answering its requests one by one", len(items))
        return [self._answer_safely([item])[0] for item in items]
