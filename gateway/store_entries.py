"""What the conference store keeps and hands out: entries, listings, the served report,
its counters, and the small rules on them (what may be served stale, how an answer reads).

Split from ``gateway/store.py``, which keeps the caches, the single flights and the fetch
logic; these are the values passing through it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from gateway.errors import GatewayError
from gateway.pbx.conferences import Conference, Room, UnreadableRoom
from gateway.staleness import StaleReport

Outcome = Conference | None | Exception
"""One number's answer: the room, ``None`` when the PBX has no such room, or the error."""

_versions = itertools.count(1)
"""Every answer the store keeps gets the next number: "the same answer" is "the same number"
(a clock that has not moved cannot tell two fetches apart)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A cached answer for one number: the room (readable or not), or ``None`` for "no such
    room"."""

    conference: Room | None
    fetched_at: float
    version: int = field(default_factory=lambda: next(_versions))


@dataclass(frozen=True, slots=True)
class Listing:
    """A cached ``all`` answer, in the PBX's order (unreadable entries in their place)."""

    conferences: tuple[Room, ...]
    fetched_at: float
    version: int = field(default_factory=lambda: next(_versions))


@dataclass
class ServedReport(StaleReport):
    """A :class:`StaleReport` that also keeps, for every answer the store gave (fresh or
    stale), when it was fetched: the oldest, so the HTTP response can say how long it
    stays fresh, and per key (a number, or ``all``), so a cached response can tell whether
    the data it was built from is still the store's current data."""

    oldest_fetched_at: float | None = None
    sources: dict[str, int] = field(default_factory=dict)
    """Store key -> version of the answer served for it."""

    def served(self, key: str, fetched_at: float, version: int) -> None:
        self.sources.setdefault(key, version)
        if self.oldest_fetched_at is None or fetched_at < self.oldest_fetched_at:
            self.oldest_fetched_at = fetched_at


@dataclass
class StoreStats:
    """Counters that tests, benchmarks and metrics read."""

    hits: int = 0
    misses: int = 0
    stale_served: int = 0
    revalidations: int = 0
    fetches: int = 0
    failed_fetches: int = 0


def outcome(room: Room | None) -> Conference | Exception | None:
    """A number's answer as the caller gets it: an unreadable room is its error."""
    return room.error() if isinstance(room, UnreadableRoom) else room


def listed(listing: Listing) -> list[Conference | Exception]:
    """A listing as the caller gets it: each unreadable entry is its error, in its place."""
    return [
        room.error() if isinstance(room, UnreadableRoom) else room for room in listing.conferences
    ]


def note_served(report: StaleReport | None, key: str, answer: Entry | Listing) -> None:
    if isinstance(report, ServedReport):
        report.served(key, answer.fetched_at, answer.version)


def may_serve_stale(error: Exception) -> bool:
    return isinstance(error, GatewayError) and error.serve_stale


def as_gateway_error(error: Exception) -> GatewayError:
    return error if isinstance(error, GatewayError) else GatewayError(str(error))
