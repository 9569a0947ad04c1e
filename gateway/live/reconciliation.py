"""Reconciliation: did the events tell everything? One poll of the watched rooms, compared.

While the events source runs, the supervisor asks now and then (only while somebody
watches) for the watched rooms and compares the answer with what the events said
(``source.known``). A room seen for the first time takes the answer as its baseline, which
is also told to the sink (its subscribers may hold an older state: nothing when not). A
difference counts only when it outlives a grace twice, the second time against a fresh
listing: an event on its way, or events that moved past the first listing (a later change)
are not taken for a missed one. A difference that stays means the PBX does not report every
change; the sink is corrected at once (``rooms_listed`` for the watched rooms, CHANGED) and
the rooms are returned, for the supervisor to decide (switch to polling, or log).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Protocol

from gateway.live.contracts import LiveSink
from gateway.pbx.sessions_query import LiveSession

RECONCILE_GRACE_SECONDS = 1.0
"""How long a difference waits for an event on its way (twice)."""

Query = Callable[[list[str]], Awaitable[Mapping[str, LiveSession]]]
Sleep = Callable[[float], Awaitable[None]]


class EventsSource(Protocol):
    """What reconciliation reads of an events source."""

    @property
    def connected(self) -> bool:
        """Whether events can arrive now (nothing to compare with otherwise)."""

    @property
    def known(self) -> dict[str, LiveSession | None]:
        """Each room as the events (and resyncs) last said."""


class Reconciler:
    """Compares one poll of the watched rooms with the events; counts its checks."""

    def __init__(
        self, query: Query, grace: float = RECONCILE_GRACE_SECONDS, sleep: Sleep | None = None
    ) -> None:
        self._query, self._grace = query, grace
        self._sleep: Sleep = sleep or asyncio.sleep
        self.checks = 0

    async def check(self, source: EventsSource, sink: LiveSink) -> list[str]:
        """The watched rooms whose state no event reported (sink already corrected)."""
        watched = sink.watched_rooms()
        if not watched or not source.connected:
            return []
        self.checks += 1
        listing = await self._query(sorted(watched))
        known = source.known
        # First look at a room no event told of (one arriving during the query counts as
        # told): the answer is its baseline, and its subscribers get it too, since what
        # they hold may be older (an INITIAL read from a listing taken before a change the
        # PBX did not report); the feed sends nothing to one who has it already.
        first = [number for number in watched if number not in known]
        for number in first:
            known[number] = listing.get(number)
        if first:
            sink.rooms_listed(listing, rooms=first)
        for look in (1, 2):
            if not _differing(known, listing, watched):
                return []
            await self._sleep(self._grace)
            if not _differing(known, listing, watched):
                return []
            if look == 1:
                listing = await self._query(sorted(watched))
        differ = _differing(known, listing, watched)
        for number in watched:
            known[number] = listing.get(number)
        sink.rooms_listed(listing, rooms=watched)
        return differ


def _differing(
    known: Mapping[str, LiveSession | None],
    listing: Mapping[str, LiveSession],
    rooms: Collection[str],
) -> list[str]:
    return sorted(n for n in rooms if _shape(known.get(n)) != _shape(listing.get(n)))


def _shape(session: LiveSession | None) -> frozenset[tuple[str | None, ...]]:
    """Who is in the room and how, order aside (None and an empty room are the same)."""
    if session is None:
        return frozenset()
    return frozenset(
        (m.kind, m.number, m.from_number, m.to_number, m.channelid, m.memberstatus)
        for m in session.members
    )
