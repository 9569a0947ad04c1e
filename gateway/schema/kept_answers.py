"""The response cache's storage: least recently used out first within a byte budget, and
every entry dropped at its own expiry time, read or not.

cachetools' ``TLRUCache`` did this, but it orders its expiry heap with a Python ``__lt__``
per comparison, and random reads (issue 19's w5) insert a new answer per request and evict
one: about a fifth of a compiled read's CPU went there. Here the heap holds
``(expires, serial, key)`` tuples, compared in C; an entry replaced or evicted leaves its
heap item behind, recognised by its serial and skipped when it comes up (the heap is
rebuilt when such items outnumber the live ones). The effect is cachetools': the same
budget, the same order of eviction, the same expiry (valid while ``now < expires``).
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(slots=True)
class _Kept(Generic[V]):
    value: V
    size: int
    expires: float
    serial: int


class KeptAnswers(Generic[K, V]):
    """A byte-budgeted LRU whose entries expire at a time given with each."""

    def __init__(self, max_bytes: int, clock: Callable[[], float]) -> None:
        self.max_bytes = max_bytes
        self.currsize = 0
        """Bytes the entries count for (never above ``max_bytes``)."""
        self.evictions = 0
        """Entries dropped, least recently used first, to make room for another."""
        self._clock = clock
        self._entries: OrderedDict[K, _Kept[V]] = OrderedDict()  # least recently used first
        self._expiry: list[tuple[float, int, K]] = []
        self._serials = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def expire(self) -> None:
        """Drop every entry whose time has come."""
        now = self._clock()
        expiry = self._expiry
        while expiry and not now < expiry[0][0]:
            _, serial, key = heapq.heappop(expiry)
            kept = self._entries.get(key)
            if kept is not None and kept.serial == serial:
                self._drop(key, kept)

    def get(self, key: K) -> V | None:
        """The value of ``key`` while it has not expired (and it becomes the most recently
        used), else None."""
        kept = self._entries.get(key)
        if kept is None:
            return None
        if not self._clock() < kept.expires:
            self._drop(key, kept)
            return None
        self._entries.move_to_end(key)
        return kept.value

    def put(self, key: K, value: V, size: int, expires: float) -> None:
        """Keep ``value`` (``size`` bytes, at most ``max_bytes``) until ``expires``, the
        least recently used others out first as needed."""
        self.expire()
        self.pop(key)
        if not self._clock() < expires:
            return  # expired already: kept for no time at all
        while self._entries and self.currsize + size > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest, self._entries[oldest])
            self.evictions += 1
        serial = next(self._serials)
        self._entries[key] = _Kept(value, size, expires, serial)
        self.currsize += size
        heapq.heappush(self._expiry, (expires, serial, key))
        if len(self._expiry) > 2 * len(self._entries) + 64:  # mostly items left behind
            live = self._entries.items()
            self._expiry = [(entry.expires, entry.serial, name) for name, entry in live]
            heapq.heapify(self._expiry)

    def pop(self, key: K) -> None:
        """Forget ``key`` (if kept)."""
        kept = self._entries.get(key)
        if kept is not None:
            self._drop(key, kept)

    def _drop(self, key: K, kept: _Kept[V]) -> None:
        del self._entries[key]
        self.currsize -= kept.size
