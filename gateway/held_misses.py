"""A client's cache misses past its PBX-fetch budget, held back into one batch, not refused.

The PBX-fetch budget (``GATEWAY_MISS_RATE_LIMIT``, ``GATEWAY_MISS_BURST``) charges a client
for the PBX calls its misses add. A service that looks rooms up one request at a time with a
literal document per room reaches the store a few milliseconds apart (each new document is
validated in turn), so each request found the previous batch already sent, paid a call of
its own, and after ten was refused, although its next forty rooms fit one call.

Now the misses that find the budget empty are held in one batch per client (at most
``batch_size`` numbers; that client's later misses join it for free) and sent when the
budget allows one more call: then they are looked up again (another caller may have
fetched them meanwhile) and the call is charged as any other. A request waits for that
only when its deadline leaves time for it; otherwise, and when the held batch is full, it
is refused at once as before. The PBX never sees more calls than the budget allows: a scan
of unknown numbers still gets one call per refill, it is slowed instead of refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from gateway.errors import RateLimitedError

T = TypeVar("T")

Admit = Callable[[int], None]
Release = Callable[[list[str], Admit], dict[str, "asyncio.Future[T]"]]
"""Looks held numbers up again and sends what is still missing, charging ``admit``
(which raises to refuse); the futures that will answer each number."""


@dataclass
class _Held(Generic[T]):
    admit: Admit
    futures: dict[str, asyncio.Future[T]] = field(default_factory=dict)


class HeldMisses(Generic[T]):
    """One held batch per client, released when that client's budget allows a call."""

    def __init__(
        self,
        release: Release[T],
        *,
        batch_size: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._release = release
        self._batch_size = batch_size
        self._clock = clock
        self._sleep = sleep
        self._held: dict[str, _Held[T]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.held_numbers = 0
        """Numbers ever held instead of refused (a metric and the tests' count)."""

    def hold(
        self,
        client: str,
        numbers: list[str],
        refusal: Exception,
        admit: Admit,
        deadline: float | None,
    ) -> dict[str, asyncio.Future[T]] | None:
        """Futures for ``numbers`` in ``client``'s held batch, or None: refuse them now
        (not a budget refusal, no time left before the deadline, or the batch is full)."""
        if not isinstance(refusal, RateLimitedError):
            return None
        wait = float(refusal.retry_after)
        if deadline is not None and self._clock() + wait >= deadline:
            return None
        held = self._held.get(client)
        new = [
            number
            for number in dict.fromkeys(numbers)
            if held is None or number not in held.futures
        ]
        if len(new) + (len(held.futures) if held is not None else 0) > self._batch_size:
            return None
        if held is None:
            held = self._held[client] = _Held(admit)
            task = asyncio.get_running_loop().create_task(self._release_later(client, held, wait))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        loop = asyncio.get_running_loop()
        for number in new:
            held.futures[number] = future = loop.create_future()
            # A refusal nobody waits for any more (the request gave up) stays quiet.
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.held_numbers += len(new)
        return {number: held.futures[number] for number in numbers}

    async def _release_later(self, client: str, held: _Held[T], wait: float) -> None:
        await self._sleep(wait)
        if self._held.get(client) is held:
            del self._held[client]  # misses from now on start a batch of their own
        try:
            sources = self._release(list(held.futures), held.admit)
        except Exception as refusal:  # still no budget (or the store is closing): refused
            for future in held.futures.values():
                if not future.done():
                    future.set_exception(refusal)
            return
        for number, future in held.futures.items():
            _forward(sources[number], future)

    async def aclose(self) -> None:
        """Cancel the held batches (the app is stopping): their waiters see a cancellation."""
        for held in self._held.values():
            for future in held.futures.values():
                future.cancel()
        self._held.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _forward(source: asyncio.Future[T], target: asyncio.Future[T]) -> None:
    """Settle ``target`` as ``source`` settles."""

    def copy(done: asyncio.Future[T]) -> None:
        if target.done():
            return
        if done.cancelled():
            target.cancel()
        elif (error := done.exception()) is not None:
            target.set_exception(error)
        else:
            target.set_result(done.result())

    source.add_done_callback(copy)
