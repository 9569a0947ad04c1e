"""Live data in a fleet, assembled: the lease around this replica's source, the bus as the
source's sink, and the bus's listener into this replica's feed.

Every replica runs the same two things: the listener (hears the fleet's changes, keeps the
fleet's watched rooms) and the leased source (waits for the lease, then runs the
supervisor's source into the bus). So whichever replica holds the lease, every replica's
subscribers hear the same states. Imported only with ``GATEWAY_REDIS_URL`` set (it needs
the ``redis`` extra); without Redis the app runs the supervisor straight into its feed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from gateway.fleet.link import RedisLink
from gateway.fleet.sealing import Sealer
from gateway.live.bus import BusSink
from gateway.live.contracts import LiveSink, LiveSource
from gateway.live.lease import Lease, LeasedSource
from gateway.live.push_receiver import PushEndpoint, Serve
from gateway.live.supervisor import LiveHandle, LiveSupervisor
from gateway.pbx.session import PbxSession
from gateway.pbx.sessions_query import MemberNotes
from gateway.secrets import Secret
from gateway.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class FleetLive:
    """The lease, the bus and the leased source of one replica (for counts and tests)."""

    lease: Lease
    bus: BusSink
    source: LeasedSource

    async def run(self) -> None:
        """Hear the bus and run the source whenever this replica holds the lease, until
        cancelled; on the way out the source stops first, then the lease is released."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self.source.run(self.bus), name="live source (leased)")
            group.create_task(self.bus.listen(), name="live bus")


def fleet_live(
    link: RedisLink, fleet_key: Secret, *, feed: LiveSink, source: LiveSource, lease_ttl: float
) -> FleetLive:
    """``source`` under the fleet's lease, telling the bus; the bus telling ``feed``."""
    lease = Lease(link, ttl=lease_ttl)
    bus = BusSink(link, Sealer(fleet_key), feed, term=lambda: lease.term)
    return FleetLive(lease, bus, LeasedSource(lease, source))


def start_fleet_live(
    settings: Settings,
    session: PbxSession,
    link: RedisLink,
    fleet_key: Secret,
    feed: LiveSink,
    *,
    notes: MemberNotes | None = None,
    push: PushEndpoint | None = None,
    serve: Serve | None = None,
) -> tuple[LiveHandle, FleetLive]:
    """The fleet's counterpart of :func:`gateway.live.supervisor.start_live`: the same
    supervisor, run only while this replica holds the lease, into the bus."""
    supervisor = LiveSupervisor(settings, session, notes=notes, push=push, serve=serve)
    live = fleet_live(
        link, fleet_key, feed=feed, source=supervisor, lease_ttl=settings.live_lease_ttl
    )
    task = asyncio.create_task(live.run(), name="live-fleet")
    task.add_done_callback(_log_crash)
    return LiveHandle(supervisor, task), live


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error(
            "live: the fleet's live source or bus stopped on an error", exc_info=task.exception()
        )
