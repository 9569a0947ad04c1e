"""Token buckets per client identity.

Two budgets use this (``gateway.app`` wires them): requests per identity, and PBX fetches
per identity, the smaller one, so a client scanning random room numbers (every one a
cache miss) cannot drive the PBX however many requests it may send. Buckets live in an
LRU cache so an address spray cannot grow memory without bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``rate`` tokens per second, up to ``burst``, per key."""

    def __init__(
        self,
        *,
        rate: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self._rate = rate
        self._burst = burst
        self.clock = clock
        self._buckets: LRUCache[str, _Bucket] = LRUCache(max_keys)
        self.rejected = 0

    def allows(self, key: str, cost: float = 1.0) -> bool:
        """Whether :meth:`take` would allow ``cost`` for ``key`` now; takes nothing."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return self._burst >= cost
        now = self.clock()
        return min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate) >= cost

    def take(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens for ``key``: 0.0 when allowed, else seconds to wait."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        self.rejected += 1
        return (cost - bucket.tokens) / self._rate if self._rate > 0 else float("inf")
