"""Which answers are worth keeping: the ones asked for a second time.

A compiled plan (:mod:`gateway.schema.compiled_plan`) answers a read that missed the
response cache in a few tens of microseconds. Keeping every such answer filled the cache
with reads nobody repeats (a service drawing room numbers: every body is new), and the
churn (an insert and an eviction per request, a cache full of objects for the garbage
collector to walk) cost a long run of them about a quarter of its rate. So a compiled
answer is kept the second time its key is seen: a repeated read is answered from the
cache from its third request on, a one-off read never enters it.

The doorkeeper is a bitmap of key hashes (``hash()`` is salted per process, so no caller
can aim at a bit), emptied after a fixed number of marks so old sightings fade: a
collision only keeps an answer a little early, never serves a wrong one (the cache checks
the key itself).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Final

BITS: Final = 1 << 20
"""Bits in the bitmap (128 KiB)."""
MARKS_PER_ROUND: Final = BITS // 8
"""Marks before the bitmap is emptied: at most an eighth of its bits set, so a new key
collides with a past one less than one time in eight."""


class SecondSight:
    """Says whether a key was seen since the bitmap was last emptied, and marks it."""

    def __init__(self, bits: int = BITS, marks_per_round: int = MARKS_PER_ROUND) -> None:
        if bits <= 0 or bits & (bits - 1):
            raise ValueError("bits must be a power of two")
        self._mask = bits - 1
        self._bitmap = bytearray(bits // 8 or 1)
        self._marks_per_round = marks_per_round
        self._marks = 0

    def seen_before(self, key: Hashable) -> bool:
        """True when ``key`` (or a key of the same hash bits) was marked this round; marks it."""
        bit = hash(key) & self._mask
        index, flag = bit >> 3, 1 << (bit & 7)
        if self._bitmap[index] & flag:
            return True
        if self._marks >= self._marks_per_round:
            self._bitmap = bytearray(len(self._bitmap))
            self._marks = 0
        self._bitmap[index] |= flag
        self._marks += 1
        return False
