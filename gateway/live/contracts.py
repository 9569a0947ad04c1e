"""The seams of live data: what produces room states (a source) and what takes them (a sink).

A *source* learns who is in which room (a ``ConferenceStatus`` event on the PBX's report
channel, a resync after the channel came back, a poll) and tells a *sink*. The feed
(subscribers on this process) is a sink; in a fleet the bus is one too (it forwards to
every replica's feed), and only the replica holding the lease runs a source. Keeping the
two apart lets each be swapped without the other knowing: events or polling, one process
or a fleet.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol

from gateway.pbx.sessions_query import LiveSession


class LiveSink(Protocol):
    """Takes room states from a source. Calls are cheap and never block (no I/O here)."""

    def room_changed(self, number: str, session: LiveSession | None) -> None:
        """Room ``number`` as the PBX just reported it (an event); None: nobody is in it."""

    def rooms_listed(
        self,
        listing: Mapping[str, LiveSession],
        rooms: Collection[str] | None = None,
        *,
        resync: bool = False,
    ) -> None:
        """A complete answer (a resync or a poll): every room of ``rooms`` (None: every
        room) that is not in ``listing`` has nobody in it. ``resync``: the answer read after
        the event channel came back (subscribers see what changed as RESYNCED, not CHANGED)."""

    def watched_rooms(self) -> frozenset[str]:
        """The rooms somebody is subscribed to now (a poller asks only for these)."""


class LiveSource(Protocol):
    """Produces room states into a sink until cancelled."""

    async def run(self, sink: LiveSink) -> None:
        """Run until cancelled, telling ``sink`` every state learned; never returns on its
        own but when the source cannot work at all (then the caller may fall back)."""
