"""The PBX's concurrency cap, with a bounded wait in front of it.

The device serves a few requests per second at best (``pbx-api.md``, Transport): at most
``max_concurrency`` requests are sent at once (by this process; with ``fleet``, by all
processes together), at most ``max_waiting`` more wait for a
slot, and anything beyond that is refused at once with ``PBX_BUSY`` (callers serve stale
data instead) rather than queueing without end while clients time out.

How a slot counts: it is taken from before the request is sent until the exchange has
ended (the PBX answered, or the client's deadline closed the connection); a call cut off
after reaching the PBX keeps its slot ``linger`` seconds more, since the PBX presumably
still works on it. Such slots are ``stuck``: readiness reports them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from gateway.errors import PbxBusyError, PbxTimeoutError


class SharedSlots(Protocol):
    """A cap shared with other processes (see :mod:`gateway.fleet.slots`)."""

    def lease(self, endpoint: str) -> AbstractAsyncContextManager[None]: ...


class PbxLimiter:
    """A semaphore that refuses to queue more than ``max_waiting`` callers."""

    def __init__(
        self,
        *,
        max_concurrency: int,
        max_waiting: int,
        fleet: SharedSlots | None = None,
        linger: float = 0.0,
    ) -> None:
        self._slots = asyncio.Semaphore(max_concurrency)
        self.limit = max_concurrency
        self._max_waiting = max_waiting
        self._fleet = fleet
        self._linger = linger
        self.in_flight = 0
        self.waiting = 0
        self.max_waiting_seen = 0
        self.rejected = 0
        self.stuck = 0
        """Slots held by calls cut off at the PBX that may still be running there."""

    @asynccontextmanager
    async def slot(self, endpoint: str) -> AsyncIterator[None]:
        """Hold one of the PBX's request slots for the duration of the block."""
        if self._slots.locked():
            if self.waiting >= self._max_waiting:
                self.rejected += 1
                raise PbxBusyError(
                    f"the PBX already has {self.in_flight} requests running and {self.waiting} "
                    "waiting; the gateway refuses to queue more (PBX_MAX_WAITING). Try again "
                    "shortly",
                    endpoint=endpoint,
                )
            self.waiting += 1
            self.max_waiting_seen = max(self.max_waiting_seen, self.waiting)
            try:
                await self._slots.acquire()
            finally:
                self.waiting -= 1
        else:
            await self._slots.acquire()
        lingering = False
        try:
            # The fleet-wide cap (a lease shared through Redis), after ours, when there is one.
            lease = self._fleet.lease(endpoint) if self._fleet is not None else _no_lease()
            async with lease:
                self.in_flight += 1
                try:
                    yield
                except PbxTimeoutError as exc:
                    lingering = exc.reached_pbx and self._linger > 0
                    raise
                finally:
                    if not lingering:
                        self.in_flight -= 1
        finally:
            if lingering:
                # We stopped waiting, but the PBX is most likely still working on the call:
                # keep its slot taken a while longer so we do not pile more onto it.
                self.stuck += 1
                asyncio.get_running_loop().call_later(self._linger, self._end_linger)
            else:
                self._slots.release()

    def _end_linger(self) -> None:
        self.stuck -= 1
        self.in_flight -= 1
        self._slots.release()


@asynccontextmanager
async def _no_lease() -> AsyncIterator[None]:
    yield
