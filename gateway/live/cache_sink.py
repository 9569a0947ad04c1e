"""The sink used until the feed is wired in: a change makes the cached listing stale.

``Conference.session`` reads who is in each room through the briefly cached
``query_in_session`` listing (:class:`~gateway.session_cache.SessionCache`). An event or a
resync says that listing is out of date, so it is forgotten and the next read asks again.
Nobody subscribes here, so no room is watched and the poller makes no calls.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from gateway.pbx.sessions_query import LiveSession
from gateway.session_cache import SessionCache


class CacheSink:
    """A :class:`~gateway.live.contracts.LiveSink` that keeps the session cache honest."""

    def __init__(self, cache: SessionCache) -> None:
        self._cache = cache

    def room_changed(self, number: str, session: LiveSession | None) -> None:
        self._cache.forget()

    def rooms_listed(
        self,
        listing: Mapping[str, LiveSession],
        rooms: Collection[str] | None = None,
        *,
        resync: bool = False,
    ) -> None:
        self._cache.forget()

    def watched_rooms(self) -> frozenset[str]:
        return frozenset()
