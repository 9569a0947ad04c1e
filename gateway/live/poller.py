"""Polling: ``query_in_session`` for the watched rooms, where the PBX sends no events.

One poller per process (per fleet: the lease holder's). Every ``interval`` seconds
(``GATEWAY_LIVE_POLL_INTERVAL``, 2 s by default) it asks the sink which rooms somebody is
subscribed to; none, no call. Otherwise one ``query_in_session`` for exactly those rooms,
through the PBX session (so within ``PBX_MAX_CONCURRENCY`` and behind the breaker), and
``sink.rooms_listed(listing, rooms=watched)``. At most one call per tick: a tick that finds
the previous call still running is skipped (counted), never queued behind it.

A failed poll is logged once (until one works again) and the next tick tries again; the
breaker keeps a failing PBX from being asked at every tick. A firmware without
``query_in_session`` (10003) ends the poller: it will not grow the endpoint while running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass

from gateway.errors import PbxError, PbxFeatureUnavailableError
from gateway.live.contracts import LiveSink
from gateway.pbx.sessions_query import LiveSession

logger = logging.getLogger(__name__)

Query = Callable[[list[str]], Awaitable[Mapping[str, LiveSession]]]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class PollCounts:
    """What the poller did, for ``/metrics`` and tests."""

    polls: int = 0
    """``query_in_session`` calls made."""
    failed: int = 0
    skipped: int = 0
    """Ticks skipped because the previous call was still running."""
    ticks: int = 0
    """Intervals that ended (a poll, a skip, or nobody watching): tests count these, not time."""


class Poller:
    """Asks for the watched rooms every ``interval`` seconds; see the module's docstring."""

    def __init__(self, query: Query, interval: float, *, sleep: Sleep = asyncio.sleep) -> None:
        self._query, self.interval, self._sleep = query, interval, sleep
        self.counts = PollCounts()
        self._in_flight: asyncio.Task[None] | None = None
        self.absent: PbxFeatureUnavailableError | None = None
        """Set when the PBX answered 10003: polling cannot work on this firmware."""
        self._failing = False

    async def run(self, sink: LiveSink) -> None:
        """Poll until cancelled; returns only when the PBX lacks ``query_in_session``."""
        try:
            while self.absent is None:
                await self._sleep(self.interval)
                self.counts.ticks += 1
                if self.absent is not None:
                    break
                watched = sink.watched_rooms()
                if not watched:
                    continue
                if self._in_flight is not None and not self._in_flight.done():
                    self.counts.skipped += 1
                    continue
                self._in_flight = asyncio.create_task(self._poll(sink, watched))
        finally:
            if self._in_flight is not None:
                self._in_flight.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._in_flight
        logger.warning("live: polling stopped: the PBX lacks conference/query_in_session")

    async def _poll(self, sink: LiveSink, watched: Collection[str]) -> None:
        self.counts.polls += 1
        try:
            listing = await self._query(sorted(watched))
        except PbxFeatureUnavailableError as exc:
            self.absent = exc
            return
        except PbxError as exc:
            self.counts.failed += 1
            if not self._failing:
                self._failing = True
                logger.warning("live: poll failed, trying again each tick: %s", exc.log_line)
            return
        if self._failing:
            self._failing = False
            logger.info("live: polling works again")
        sink.rooms_listed(listing, rooms=watched)
