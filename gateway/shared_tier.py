"""The conference store's shared tier: none (one gateway) or the fleet's cache in Redis.

A strategy picked once, when the store is built: with ``GATEWAY_REDIS_URL`` the app hands
the store the fleet's :class:`~gateway.fleet.cache.SharedCache` (built in
``gateway/fleet/assemble.py``), else the store uses :class:`NoSharedTier`. The store asks
its tier and never asks whether there is a fleet; it imports nothing of the fleet's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from gateway.pbx.conferences import Conference, Room, in_order

Settle = Callable[[list[str]], Awaitable[Mapping[str, Room]]]
"""Fetches numbers from the PBX; a number left out of the answer is proven unknown."""

FetchAll = Callable[[], Awaitable[Mapping[str, Room]]]
"""Fetches the PBX's ``all`` listing."""


class SharedTier(Protocol):
    """Answers with their ages (seconds since they were fetched, by whichever replica)."""

    async def load(
        self, numbers: list[str], fetch: Settle
    ) -> Mapping[str, tuple[Room | None, float]]:
        """Every number's answer: shared if fresh there, else fetched with ``fetch``."""

    async def load_listing(self, fetch_all: FetchAll) -> tuple[list[Room], float]:
        """The ``all`` listing in the PBX's order: shared if fresh there, else fetched."""

    async def stale_copies(self, numbers: Sequence[str]) -> Mapping[str, tuple[Conference, float]]:
        """Rooms others fetched, whatever their age (to serve stale after a failure)."""

    async def forget(self, number: str) -> None:
        """Drop ``number`` from the tier and tell every other replica to."""

    async def listen(self, on_forget: Callable[[str], None]) -> None:
        """Apply other replicas' forgets here (runs until cancelled, or returns at once)."""


class NoSharedTier:
    """One gateway on its own: everything is fetched here, now; nobody else to tell."""

    async def load(
        self, numbers: list[str], fetch: Settle
    ) -> Mapping[str, tuple[Room | None, float]]:
        found = await fetch(numbers)
        return {number: (found.get(number), 0.0) for number in numbers}

    async def load_listing(self, fetch_all: FetchAll) -> tuple[list[Room], float]:
        return in_order(await fetch_all()), 0.0

    async def stale_copies(self, numbers: Sequence[str]) -> Mapping[str, tuple[Conference, float]]:
        return {}

    async def forget(self, number: str) -> None:
        return None

    async def listen(self, on_forget: Callable[[str], None]) -> None:
        return None
