"""The conference store: one cache shared by every request, in front of the PBX.

Why a layer below the per-request DataLoader: the loader batches what *one* GraphQL
request needs, but many requests ask for the same rooms, and the PBX manages only a few
requests per second. So the store

- keeps decoded conferences (never futures or errors) in a cachetools ``TTLCache`` for
  ``GATEWAY_CACHE_TTL`` seconds, and remembers "no such number" for as long;
- shares in-flight fetches: concurrent requests that miss on the same numbers wait for
  the one PBX call already under way (single-flight), so 100 cold requests make one call;
- fetches every number one request misses in one ``conference/query`` (split only above
  ``batch_size``), and fills per-number entries from a ``conferences``-without-arguments
  (``all``) listing, so later single lookups need no call.

Failures are never cached: the next request asks again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from cachetools import TTLCache

from gateway.pbx.conferences import Conference

ALL: Final = "all"

Fetch = Callable[[Sequence[str] | Literal["all"]], Awaitable[dict[str, Conference]]]
"""Asks the PBX: numbers (or ``all``) in, the conferences it knows keyed by number out."""

Outcome = Conference | None | Exception
"""One number's answer: the room, ``None`` when the PBX has no such room, or the error."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A cached answer for one number: the room, or ``None`` for "no such room"."""

    conference: Conference | None
    fetched_at: float


@dataclass(frozen=True, slots=True)
class Listing:
    """A cached ``all`` answer, in the PBX's order."""

    conferences: tuple[Conference, ...]
    fetched_at: float


@dataclass
class StoreStats:
    """Counters that tests, benchmarks and metrics read."""

    hits: int = 0
    misses: int = 0
    fetches: int = 0
    failed_fetches: int = 0


class ConferenceStore:
    """Cached, single-flight access to conferences by number, or all of them."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        ttl: float,
        max_entries: int = 50_000,
        batch_size: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._batch_size = batch_size
        self._clock = clock
        self._fresh: TTLCache[str, Entry] = TTLCache(max_entries, ttl, timer=clock)
        self._listing: TTLCache[str, Listing] = TTLCache(1, ttl, timer=clock)
        self._inflight: dict[str, asyncio.Future[Entry]] = {}
        self._listing_inflight: asyncio.Future[Listing] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # strong refs: the loop keeps weak ones
        self.stats = StoreStats()

    async def get_many(self, numbers: Sequence[str]) -> list[Outcome]:
        """One outcome per number, in order; misses are fetched together, once."""
        entries: dict[str, Entry] = {}
        waiting: dict[str, asyncio.Future[Entry]] = {}
        missing: list[str] = []
        for number in dict.fromkeys(numbers):
            entry = self._fresh.get(number)
            if entry is not None:
                entries[number] = entry
                self.stats.hits += 1
            elif number in self._inflight:
                waiting[number] = self._inflight[number]
                self.stats.hits += 1  # someone else's call will answer it: no PBX call of ours
            else:
                missing.append(number)
                self.stats.misses += 1
        for chunk in _chunks(missing, self._batch_size):
            waiting.update(self._start_fetch(chunk))
        failures: dict[str, Exception] = {}
        for number, future in waiting.items():
            try:
                # shield: a caller that goes away must not cancel a call others wait for.
                entries[number] = await asyncio.shield(future)
            except Exception as exc:
                failures[number] = exc
        return [
            failures[number] if number in failures else entries[number].conference
            for number in numbers
        ]

    async def get_all(self) -> list[Conference]:
        """Every conference, in the PBX's order; one ``all`` call per TTL at most."""
        listing = self._listing.get(ALL)
        if listing is not None:
            self.stats.hits += 1
            return list(listing.conferences)
        if self._listing_inflight is None:
            self.stats.misses += 1
            self._listing_inflight = self._new_future()
            self._spawn(self._fetch_listing(self._listing_inflight))
        else:
            self.stats.hits += 1
        listing = await asyncio.shield(self._listing_inflight)
        return list(listing.conferences)

    def _start_fetch(self, numbers: list[str]) -> dict[str, asyncio.Future[Entry]]:
        futures: dict[str, asyncio.Future[Entry]] = {n: self._new_future() for n in numbers}
        for number, future in futures.items():
            self._inflight[number] = future
        self._spawn(self._fetch_numbers(futures))
        return futures

    async def _fetch_numbers(self, futures: dict[str, asyncio.Future[Entry]]) -> None:
        self.stats.fetches += 1
        try:
            found = await self._fetch(list(futures))
        except Exception as exc:
            self.stats.failed_fetches += 1
            for future in futures.values():
                future.set_exception(exc)
        else:
            now = self._clock()
            for number, future in futures.items():
                entry = Entry(found.get(number), now)
                self._fresh[number] = entry
                future.set_result(entry)
        finally:
            for number, future in futures.items():
                if self._inflight.get(number) is future:
                    del self._inflight[number]

    async def _fetch_listing(self, future: asyncio.Future[Listing]) -> None:
        self.stats.fetches += 1
        try:
            found = await self._fetch(ALL)
        except Exception as exc:
            self.stats.failed_fetches += 1
            future.set_exception(exc)
        else:
            now = self._clock()
            listing = Listing(tuple(found.values()), now)
            self._listing[ALL] = listing
            self._remember(found.values(), now)
            future.set_result(listing)
        finally:
            self._listing_inflight = None

    def _remember(self, conferences: Iterable[Conference], now: float) -> None:
        for conference in conferences:
            self._fresh[conference.number] = Entry(conference, now)

    @staticmethod
    def _new_future() -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        # Mark a failure as seen even when every waiter went away, so asyncio stays quiet.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        return future

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Cancel fetches still under way (at shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
