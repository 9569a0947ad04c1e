"""The store's number fetches: single-flight per number, batched, at most ``lanes`` at once.

Every number being fetched has one future, shared by every caller that asks for it
meanwhile (single-flight). Misses join the last queued batch (up to ``batch_size``
numbers); a batch is sent when a lane frees, so N concurrent requests for N different cold
rooms cost a few PBX calls, not N. What a batch does once sent (the PBX call, what is kept)
is the store's: it hands the queue a ``start`` callback and says when a batch has ended.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def new_future() -> asyncio.Future[Any]:
    """A future on the running loop whose failure never goes unretrieved."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    # Mark a failure as seen even when every waiter went away, so asyncio stays quiet.
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


class FetchQueue(Generic[T]):
    """Queued batches, the lanes they are sent on, and the futures of numbers under way."""

    def __init__(
        self,
        start: Callable[[dict[str, asyncio.Future[T]]], None],
        *,
        batch_size: int,
        lanes: int | None,
    ) -> None:
        self._start = start
        self._batch_size = batch_size
        self._lanes = lanes  # number fetches sent at once; None: no limit of our own
        self._running = 0
        self._queued: list[dict[str, asyncio.Future[T]]] = []  # batches waiting for a lane
        self._inflight: dict[str, asyncio.Future[T]] = {}

    def pending(self, number: str) -> asyncio.Future[T] | None:
        """The future of a fetch of ``number`` queued or under way, if any."""
        return self._inflight.get(number)

    def new_calls(self, count: int) -> int:
        """PBX calls ``count`` more missed numbers would add: the queued batch takes them
        for free while it has room (it is sent anyway), then each ``batch_size`` is one."""
        room = self._batch_size - len(self._queued[-1]) if self._queued else 0
        return math.ceil(max(0, count - room) / self._batch_size)

    def enqueue(self, numbers: list[str]) -> dict[str, asyncio.Future[T]]:
        """One future per number, in the last queued batch (a new one when it is full),
        then as many batches sent as lanes are free."""
        futures: dict[str, asyncio.Future[T]] = {}
        for number in numbers:
            if not self._queued or len(self._queued[-1]) >= self._batch_size:
                self._queued.append({})
            batch = self._queued[-1]
            # Asked again after forget() while still queued: the call is not sent yet, so
            # its answer is newer than the change; share it.
            future = batch.get(number) or new_future()
            batch[number] = self._inflight[number] = futures[number] = future
        self._dispatch()
        return futures

    def finished(self, batch: dict[str, asyncio.Future[T]]) -> None:
        """A sent batch has ended (its futures are settled): free its lane."""
        for number, future in batch.items():
            if self._inflight.get(number) is future:
                del self._inflight[number]
        self._running -= 1
        self._dispatch()

    def drop(self, number: str) -> None:
        """Later lookups of ``number`` start a fetch of their own (it was changed)."""
        self._inflight.pop(number, None)

    def cancel(self) -> None:
        """Cancel every batch not sent yet (at shutdown)."""
        for batch in self._queued:
            for future in batch.values():
                future.cancel()
        self._queued.clear()

    def _dispatch(self) -> None:
        """Send queued batches while a lane is free."""
        while self._queued and (self._lanes is None or self._running < self._lanes):
            self._running += 1
            self._start(self._queued.pop(0))
