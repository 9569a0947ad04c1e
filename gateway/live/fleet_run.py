"""Live data in a fleet, assembled: the lease around this replica's source, the bus as the
source's sink, and the bus's listener into this replica's feed.

Every replica starts the same two tasks: the listener (hears the fleet's changes, keeps
the fleet's watched rooms) and the leased source (waits for the lease, then runs the
source into the bus). So whichever replica holds the lease, every replica's subscribers
hear the same states. Imported only with ``GATEWAY_REDIS_URL`` set (it needs the
``redis`` extra); without Redis the app runs the source straight into its feed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from gateway.fleet.link import RedisLink
from gateway.fleet.sealing import Sealer
from gateway.live.bus import BusSink
from gateway.live.contracts import LiveSink, LiveSource
from gateway.live.lease import Lease, LeasedSource
from gateway.secrets import Secret

logger = logging.getLogger(__name__)


@dataclass
class FleetLive:
    """The running pieces, for counts and :meth:`aclose`."""

    lease: Lease
    bus: BusSink
    source: LeasedSource
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def aclose(self) -> None:
        """Stop the source and release the lease (while Redis is still open), then stop
        hearing the bus."""
        for task in self.tasks:  # the source first: it releases the lease on its way out
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def start_fleet_live(
    link: RedisLink,
    fleet_key: Secret,
    *,
    feed: LiveSink,
    source: LiveSource,
    lease_ttl: float,
) -> FleetLive:
    """Start the leased ``source`` and the bus listener into ``feed`` in the running loop."""
    lease = Lease(link, ttl=lease_ttl)
    bus = BusSink(link, Sealer(fleet_key), feed, term=lambda: lease.term)
    leased = LeasedSource(lease, source)
    live = FleetLive(lease, bus, leased)
    live.tasks = [
        asyncio.create_task(leased.run(bus), name="live source (leased)"),
        asyncio.create_task(bus.listen(), name="live bus"),
    ]
    for task in live.tasks:
        task.add_done_callback(_log_end)
    return live


def _log_end(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        logger.error("live (fleet): %s stopped on an error", task.get_name(), exc_info=error)
    elif task.get_name() == "live source (leased)":
        logger.warning("live (fleet): the source cannot work here; the lease was released")
