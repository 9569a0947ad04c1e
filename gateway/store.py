"""The conference store: one cache shared by every request, in front of the PBX.

Why a layer below the per-request DataLoader: the loader batches what *one* GraphQL
request needs, but many requests ask for the same rooms, and the PBX manages only a few
requests per second. So the store

- keeps decoded conferences (never futures or errors) in a cachetools ``TTLCache`` for
  ``ttl`` seconds (``GATEWAY_CACHE_TTL``), and remembers "no such number" for as long;
- shares in-flight fetches: concurrent requests that miss on the same numbers wait for
  the one PBX call already under way (single-flight), so 100 cold requests make one call;
- fetches every number one request misses in one ``conference/query`` (split only above
  ``batch_size``), and fills per-number entries from an ``all`` listing, so later single
  lookups need no call;
- with ``lanes`` (the PBX cap), sends at most that many number fetches at once; misses
  that arrive meanwhile join one queued batch (up to ``batch_size`` numbers), sent when a
  lane frees, so N concurrent requests for N different cold rooms cost a few calls, not N.
  ``admit`` is charged only for the calls a request really adds (joining is free);
- keeps "no such room" only when proven (:meth:`~ConferenceStore._settle`): numbers an
  answer leaves open (a short multi-number batch, a failed one) are checked against the
  ``all`` listing, itself cached and single-flight, before any is called unknown;
- keeps a room the PBX sent but that cannot be read (``UnreadableRoom``) for the TTL like
  any answer, so it costs no extra PBX calls; it answers as an error at that room's path
  and is never served stale;
- keeps each room's last known value for ``stale_ttl`` (``GATEWAY_STALE_TTL``) in a
  second TTLCache, and serves it, noted in the request's
  :class:`~gateway.staleness.StaleReport`, when the PBX cannot answer (the error says so
  with ``serve_stale``) or the request's deadline passes; "no such room" and errors are
  never served stale;
- serves an entry that expired less than ``revalidate_window`` seconds ago at once and
  refreshes it in the background (stale-while-revalidate), so a hot key's expiry costs one
  PBX call and no client waits for it; such an answer is noted in the report too (nothing
  older than the TTL is presented as fresh): as revalidating, or, once a refresh of it
  failed, with that failure, until a refresh succeeds;
- after :meth:`~ConferenceStore.forget` (a room was changed), never keeps what a fetch
  that started before it brings back for that room: it may be the old value.

Its parts live beside it: the batched, single-flight number fetches in
``gateway/fetch_queue.py``, the shared tier (none, or the fleet's) in
``gateway/shared_tier.py``, the values it keeps in ``gateway/store_entries.py``. Why this
module is still over 300 lines: the fresh, known and listing caches, the ``forget`` epochs
and the stale rules read and write the same state on every path (a fetch's answer is kept
only if its epoch allows, a failure marks what is then served stale); split further, each
part would reach into the others' state.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

from cachetools import TTLCache

from gateway.conference_codec import ALL
from gateway.errors import GatewayError, PbxTimeoutError
from gateway.fetch_queue import FetchQueue, new_future
from gateway.held_misses import HeldMisses
from gateway.pbx.conferences import Conference, QueryAnswer, Room, UnreadableRoom
from gateway.shared_tier import NoSharedTier, SharedTier
from gateway.staleness import StaleReport
from gateway.store_entries import (
    Entry,
    Listing,
    Outcome,
    ServedReport,
    StoreStats,
    as_gateway_error,
    listed,
    may_serve_stale,
    note_served,
    outcome,
)

__all__ = ["ALL", "Admit", "ConferenceStore", "Entry", "Fetch", "Outcome", "ServedReport"]

Fetch = Callable[[Sequence[str] | Literal["all"]], Awaitable[Mapping[str, Room]]]
"""Asks the PBX: numbers (or ``all``) in, the rooms it reports keyed by number out. A
:class:`QueryAnswer` also says which asked numbers it leaves open (``unproven``); a plain
mapping proves every asked number it leaves out unknown."""

Admit = Callable[[int], None]
"""Asked before new PBX fetches start for a caller; raises to refuse them."""


class ConferenceStore:
    """Cached, single-flight access to conferences by number, or all of them."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        ttl: float,
        stale_ttl: float = 0.0,
        revalidate_window: float = 0.0,
        max_entries: int = 50_000,
        batch_size: int = 100,
        lanes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedTier | None = None,
    ) -> None:
        self._fetch = fetch
        # The fleet's cache (gateway.fleet.cache.SharedCache), or none: picked here, once.
        self._tier: SharedTier = shared if shared is not None else NoSharedTier()
        self._ttl = ttl
        self._revalidate_until = ttl + revalidate_window
        self._stale_ttl = max(stale_ttl, ttl + revalidate_window)
        self._batch_size = batch_size
        self._clock = clock
        self._fresh: TTLCache[str, Entry] = TTLCache(max_entries, ttl, timer=clock)
        self._listing: TTLCache[str, Listing] = TTLCache(1, ttl, timer=clock)
        keep = max(stale_ttl, ttl + revalidate_window)
        self._known: TTLCache[str, Entry] = TTLCache(max_entries, keep, timer=clock)
        self._known_listing: TTLCache[str, Listing] = TTLCache(1, keep, timer=clock)
        # The last failed refresh of a known entry, until one succeeds: its stale mark.
        self._refresh_failed: TTLCache[str, GatewayError] = TTLCache(max_entries, keep, timer=clock)
        # The epoch when a batch is sent: a forget() before it cannot be undone by its answer.
        self._queue: FetchQueue[Entry] = FetchQueue(
            lambda batch: self._spawn(self._fetch_numbers(batch, self._epoch)),
            batch_size=batch_size,
            lanes=lanes,
        )
        # A client's misses past its fetch budget wait for its next call instead of failing.
        self._held: HeldMisses[Entry] = HeldMisses(
            self._release_held, batch_size=batch_size, clock=clock
        )
        self._listing_inflight: asyncio.Future[Listing] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # strong refs: the loop keeps weak ones
        # Every forget() is a new epoch; a fetch notes the epoch it started in and keeps a
        # number's answer only if the number was not forgotten since. One int per number
        # ever changed through the gateway: bounded by the rooms on the PBX.
        self._epoch = 0
        self._forgotten_at: dict[str, int] = {}
        self.stats = StoreStats()

    @property
    def held_numbers(self) -> int:
        """Misses ever held for a client's next call instead of refused."""
        return self._held.held_numbers

    @property
    def holds_data(self) -> bool:
        """Whether any conference could be served (fresh or stale) right now."""
        return len(self._known) > 0

    async def get_many(
        self,
        numbers: Sequence[str],
        *,
        report: StaleReport | None = None,
        deadline: float | None = None,
        admit: Admit | None = None,
        client: str | None = None,
    ) -> list[Outcome]:
        """One outcome per number, in order; misses are fetched together, once.

        ``deadline`` is a ``clock()`` value: waits end there, answering stale or a
        timeout error. Stale answers are noted in ``report``. ``admit(n)`` is asked
        before ``n`` new PBX fetches start on the caller's behalf; it raises (e.g. the
        caller's rate limit) to refuse them, and those numbers then fail with its error,
        unless ``client`` is given and the refusal is the fetch budget's: then they wait
        in that client's held batch for its next call (:mod:`gateway.held_misses`).
        """
        entries, waiting, missing, revalidate = self._sort(numbers)
        for number, entry in entries.items():
            self._note_expired(report, number, entry)
        failures: dict[str, Exception] = {}
        calls = self._queue.new_calls(len(missing))
        try:
            if calls and admit is not None:
                admit(calls)  # the caller pays for the PBX calls it adds, nothing else
        except Exception as refusal:
            held = None
            if client is not None and admit is not None:
                held = self._held.hold(client, missing, refusal, admit, deadline)
            if held is None:
                failures.update(dict.fromkeys(missing, refusal))
            else:
                waiting.update(held)
        else:
            waiting.update(self._queue.enqueue(missing))
        if revalidate:
            self.stats.revalidations += math.ceil(len(revalidate) / self._batch_size)
            self._queue.enqueue(revalidate)
        for number, future in waiting.items():
            try:
                entries[number] = await self._wait(future, deadline)
            except Exception as exc:
                failures[number] = exc
        for number, failure in failures.items():
            stale = self._stale_for(number, failure)
            if stale is not None:
                entries[number] = stale
                self._note(report, number, stale, failure)
        for number, entry in entries.items():
            note_served(report, number, entry)
        return [outcome(entries[n].conference) if n in entries else failures[n] for n in numbers]

    def _release_held(self, numbers: list[str], admit: Admit) -> dict[str, asyncio.Future[Entry]]:
        """A held batch's turn: what is fresh or under way now is shared, the rest is
        sent (``admit`` charged for the calls it adds; it raises to refuse them)."""
        futures: dict[str, asyncio.Future[Entry]] = {}
        missing: list[str] = []
        now = self._clock()
        for number in numbers:
            entry = self._fresh.get(number)
            if entry is not None and now - entry.fetched_at < self._ttl:
                futures[number] = done = new_future()
                done.set_result(entry)
            elif (future := self._queue.pending(number)) is not None:
                futures[number] = future
            else:
                missing.append(number)
        calls = self._queue.new_calls(len(missing))
        if calls:
            admit(calls)
        futures.update(self._queue.enqueue(missing))
        return futures

    def _sort(
        self,
        numbers: Sequence[str],
        now: float | None = None,
        fresh: Mapping[str, Entry] | None = None,
    ) -> tuple[dict[str, Entry], dict[str, asyncio.Future[Entry]], list[str], list[str]]:
        """Split numbers into answered now, waiting on a call under way, to fetch, and
        answered now but to refresh in the background. ``fresh``: entries the caller has
        just looked up at ``now`` (found fresh), not looked up again."""
        now = self._clock() if now is None else now
        entries: dict[str, Entry] = {}
        waiting: dict[str, asyncio.Future[Entry]] = {}
        missing: list[str] = []
        revalidate: list[str] = []
        for number in dict.fromkeys(numbers):
            entry = fresh.get(number) if fresh is not None else None
            if entry is None:
                entry = _lookup(self._fresh, number)
            if entry is not None and now - entry.fetched_at < self._ttl:
                entries[number] = entry
                self.stats.hits += 1
            elif (known := self._recent(number, now)) is not None:
                entries[number] = known  # served now; refreshed once in the background
                if self._queue.pending(number) is None:
                    revalidate.append(number)
                self.stats.hits += 1
            elif (future := self._queue.pending(number)) is not None:
                waiting[number] = future
                self.stats.hits += 1  # someone else's call will answer it: no PBX call of ours
            else:
                missing.append(number)
                self.stats.misses += 1
        return entries, waiting, missing, revalidate

    def answer_now(
        self, numbers: Sequence[str], *, report: StaleReport | None = None
    ) -> list[Outcome] | None:
        """What :meth:`get_many` would answer, when it would answer at once and without an
        error: every number fresh, or recent enough to serve while a background refresh
        runs (started here, as there, and noted in ``report``). None, with nothing counted
        or started, when any number would need a PBX call or a wait, or is a room the PBX
        sent unreadable (the caller then takes the long way, where that is answered).

        For callers that cannot wait (a compiled plan, :mod:`gateway.schema.compiled_plan`):
        the same answer, stale marks, counts and side effects as :meth:`get_many`."""
        now = self._clock()
        fresh: dict[str, Entry] = {}
        for number in dict.fromkeys(numbers):  # get_many's order: the cache's LRU order too
            entry = _lookup(self._fresh, number)
            if entry is not None and now - entry.fetched_at < self._ttl:
                if isinstance(entry.conference, UnreadableRoom):
                    return None
                fresh[number] = entry
            elif self._recent(number, now) is None:
                return None
        # get_many's part before its first wait, for numbers all answered now (the same
        # clock reading: none is missing or waiting; the fresh ones not looked up again).
        entries, _, missing, revalidate = self._sort(numbers, now, fresh)
        for number, entry in entries.items():
            self._note_expired(report, number, entry)
        self._queue.enqueue(missing)
        if revalidate:
            self.stats.revalidations += math.ceil(len(revalidate) / self._batch_size)
            self._queue.enqueue(revalidate)
        for number, entry in entries.items():
            note_served(report, number, entry)
        return [outcome(entries[n].conference) for n in numbers]

    async def get_all(
        self,
        *,
        report: StaleReport | None = None,
        deadline: float | None = None,
        admit: Admit | None = None,
    ) -> list[Conference | Exception]:
        """Every conference, in the PBX's order; one ``all`` call per TTL at most. An entry
        that cannot be read is its error, in its place."""
        listing = self._listing.get(ALL)
        if listing is not None and self._clock() - listing.fetched_at < self._ttl:
            self.stats.hits += 1
            return self._serve_listing(report, listing)
        known = self._known_listing.get(ALL)
        recent = known is not None and self._clock() - known.fetched_at < self._revalidate_until
        if self._listing_inflight is None:
            if admit is not None and not recent:
                try:
                    admit(1)
                except Exception as refusal:
                    return self._stale_listing(report, known, refusal)
            self._listing_inflight = new_future()
            self._spawn(self._fetch_listing(self._listing_inflight, self._epoch))
            if recent:
                self.stats.revalidations += 1
            else:
                self.stats.misses += 1
        if known is not None and recent:
            self.stats.hits += 1
            if report is not None:  # past its TTL: marked, never presented as fresh
                report.add_listing(self._clock() - known.fetched_at, self._refresh_failed.get(ALL))
            return self._serve_listing(report, known)
        try:
            listing = await self._wait(self._listing_inflight, deadline)
        except Exception as exc:
            return self._stale_listing(report, known, exc)
        return self._serve_listing(report, listing)

    @staticmethod
    def _serve_listing(
        report: StaleReport | None, listing: Listing
    ) -> list[Conference | Exception]:
        note_served(report, ALL, listing)
        return listed(listing)

    def _stale_listing(
        self, report: StaleReport | None, known: Listing | None, error: Exception
    ) -> list[Conference | Exception]:
        """The last known listing in place of the one ``error`` kept from the caller (noted
        in the report), or ``error`` itself when there is none or it may not be served."""
        if known is None or not may_serve_stale(error):
            raise error
        self.stats.stale_served += 1
        if report is not None:
            report.add_listing(self._clock() - known.fetched_at, as_gateway_error(error))
        return self._serve_listing(report, known)

    def current(self, key: str) -> int | None:
        """The version of the fresh answer the store would give for ``key`` (a number or
        ``all``) right now, or None when it would have to fetch or serve stale."""
        entry: Entry | Listing | None = (
            self._listing.get(ALL) if key == ALL else self._fresh.get(key)
        )
        if entry is None or self._clock() - entry.fetched_at >= self._ttl:
            return None
        return entry.version

    async def invalidate(self, number: str) -> None:
        """:meth:`forget` here and, with a shared tier, in Redis and on every replica."""
        self.forget(number)
        await self._tier.forget(number)

    async def listen_for_invalidations(self) -> None:
        """Apply other replicas' invalidations (runs until cancelled; shared tier only)."""
        await self._tier.listen(self.forget)

    def forget(self, number: str) -> None:
        """Drop everything known about ``number`` (after it was changed on the PBX).

        Fetches already under way may bring back the value from before the change: they
        still answer the callers waiting for them, but their answer for ``number`` (and
        any ``all`` listing) is not kept, and later lookups start a fetch of their own.
        """
        self._epoch += 1
        self._forgotten_at[number] = self._epoch
        for cache in (self._fresh, self._known, self._refresh_failed):
            cache.pop(number, None)
        self._queue.drop(number)
        self._listing_inflight = None
        self._listing.clear()
        self._known_listing.clear()
        self._refresh_failed.pop(ALL, None)

    def _unchanged_since(self, number: str, epoch: int) -> bool:
        """Whether ``number`` was not forgotten after ``epoch`` (its answer may be kept)."""
        return self._forgotten_at.get(number, 0) <= epoch

    def _recent(self, number: str, now: float) -> Entry | None:
        """A known entry young enough to serve while it is refreshed in the background."""
        known = _lookup(self._known, number)
        if known is not None and now - known.fetched_at < self._revalidate_until:
            return known
        return None

    def _note_expired(self, report: StaleReport | None, number: str, entry: Entry) -> None:
        """Mark an entry served past its TTL (stale-while-revalidate): revalidating, or
        with the failure of its last refresh."""
        age = self._clock() - entry.fetched_at
        if report is not None and age >= self._ttl and entry.conference is not None:
            report.add(number, age, self._refresh_failed.get(number))

    def _stale_for(self, number: str, error: Exception) -> Entry | None:
        if not may_serve_stale(error):
            return None
        known = self._known.get(number)
        if known is None or self._clock() - known.fetched_at >= self._stale_ttl:
            return None
        return known

    def _note(
        self, report: StaleReport | None, number: str, stale: Entry, error: Exception
    ) -> None:
        self.stats.stale_served += 1
        if report is not None:
            report.add(number, self._clock() - stale.fetched_at, as_gateway_error(error))

    async def _wait(self, future: asyncio.Future[Any], deadline: float | None) -> Any:
        # shield: a caller that goes away (or times out) must not cancel a call others need.
        if deadline is None:
            return await asyncio.shield(future)
        remaining = deadline - self._clock()
        try:
            async with asyncio.timeout(max(remaining, 0.0)):
                return await asyncio.shield(future)
        except TimeoutError:
            raise PbxTimeoutError(
                "the PBX did not answer within this request's deadline "
                "(GATEWAY_REQUEST_DEADLINE); it may be overloaded, try again shortly",
                endpoint="conference/query",
            ) from None

    async def _fetch_numbers(self, futures: dict[str, asyncio.Future[Entry]], epoch: int) -> None:
        self.stats.fetches += 1
        numbers = list(futures)
        try:
            answers = await self._load(numbers)
        except Exception as exc:
            self.stats.failed_fetches += 1
            await self._learn_stale_copies(numbers)
            for number in numbers:
                if number in self._known:
                    self._refresh_failed[number] = as_gateway_error(exc)
            for future in futures.values():
                future.set_exception(exc)
        else:
            for number, future in futures.items():
                entry = answers[number]
                if self._unchanged_since(number, epoch):
                    self._keep(number, entry)
                future.set_result(entry)
        finally:
            self._queue.finished(futures)

    async def _fetch_listing(self, future: asyncio.Future[Listing], epoch: int) -> None:
        self.stats.fetches += 1
        try:
            rooms, now = await self._load_listing()
        except Exception as exc:
            self.stats.failed_fetches += 1
            if ALL in self._known_listing:
                self._refresh_failed[ALL] = as_gateway_error(exc)
            future.set_exception(exc)
        else:
            listing = Listing(tuple(rooms), now)
            if self._epoch == epoch:  # nothing was forgotten meanwhile: the whole list holds
                self._listing[ALL] = self._known_listing[ALL] = listing
                self._refresh_failed.pop(ALL, None)
            for room in listing.conferences:
                if room.number is not None and self._unchanged_since(room.number, epoch):
                    self._keep(room.number, Entry(room, now))
            future.set_result(listing)
        finally:
            if self._listing_inflight is future:  # forget() may have let a newer one start
                self._listing_inflight = None

    async def _load(self, numbers: list[str]) -> dict[str, Entry]:
        """Ask the PBX (through the shared tier, which may have the answers) for ``numbers``."""
        answers = await self._tier.load(numbers, self._settle)
        now = self._clock()
        return {n: Entry(room, now - age) for n, (room, age) in answers.items()}

    async def _load_listing(self) -> tuple[list[Room], float]:
        async def fetch_all() -> Mapping[str, Room]:
            return await self._fetch(ALL)

        rooms, age = await self._tier.load_listing(fetch_all)
        return rooms, self._clock() - age

    async def _settle(self, numbers: list[str]) -> dict[str, Room]:
        """Fetch ``numbers``; a number left out of the result is proven unknown, since the
        numbers the answer leaves open are looked up in the ``all`` listing first (one call,
        cached for the TTL and shared with every other caller through its single flight)."""
        answer = await self._fetch(numbers)
        rooms = dict(answer)
        open_numbers = [n for n in _unproven(answer) if n not in rooms]
        if not open_numbers:
            return rooms
        listing = await self._listing_for_proof()
        listed = {room.number: room for room in listing.conferences if room.number is not None}
        numberless = len(listed) < len(listing.conferences)
        for number in open_numbers:
            if number in listed:
                rooms[number] = listed[number]
            elif numberless:  # a room the PBX did not number may be this one: nothing proven
                rooms[number] = UnreadableRoom(
                    number,
                    f"the PBX's list of rooms holds a room without a readable number; room "
                    f"{number} may be it, so it is not reported as unknown",
                    "conference/query",
                )
        return rooms

    async def _listing_for_proof(self) -> Listing:
        """The ``all`` listing: the fresh cached one, the one under way, or a new fetch."""
        listing = self._listing.get(ALL)
        if listing is not None and self._clock() - listing.fetched_at < self._ttl:
            return listing
        if self._listing_inflight is None:
            self._listing_inflight = new_future()
            self.stats.misses += 1
            self._spawn(self._fetch_listing(self._listing_inflight, self._epoch))
        found: Listing = await asyncio.shield(self._listing_inflight)
        return found

    async def _learn_stale_copies(self, numbers: list[str]) -> None:
        """After a failed fetch: rooms other replicas fetched are last known values too."""
        now = self._clock()
        for number, (room, age) in (await self._tier.stale_copies(numbers)).items():
            known = self._known.get(number)
            if known is None or known.fetched_at < now - age:
                self._known[number] = Entry(room, now - age)

    def _keep(self, number: str, entry: Entry) -> None:
        self._fresh[number] = entry
        self._refresh_failed.pop(number, None)
        if not isinstance(entry.conference, Conference):
            self._known.pop(number, None)  # gone or unreadable: never served stale
        else:
            self._known[number] = entry

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Cancel fetches still under way, queued or held (at shutdown)."""
        await self._held.aclose()
        self._queue.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _lookup(cache: TTLCache[str, Entry], number: str) -> Entry | None:
    """``cache.get(number)`` at half the cost: cachetools' ``get`` asks ``in`` and then
    ``[]``, each reading the clock; a lookup happens per number of every read."""
    try:
        return cache[number]
    except KeyError:  # absent, or expired
        return None


def _unproven(answer: Mapping[str, Room]) -> frozenset[str]:
    return answer.unproven if isinstance(answer, QueryAnswer) else frozenset()
