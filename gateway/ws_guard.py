"""The WebSocket side of the connection guard: an upgraded connection stays counted.

uvicorn upgrades a connection by handing its transport from the HTTP protocol to a new
WebSocket protocol object; the HTTP protocol never hears of that connection again, so the
guard's counts (:mod:`gateway.http_guard`: open connections, per address) would keep it
for ever and ``/metrics`` would drift. :class:`GuardedWebSocketProtocol` is uvicorn's
sans-I/O WebSocket protocol taking over the release: the HTTP protocol gives it its
``on_lost`` callback at the upgrade, and it calls it once, when the connection is lost.

A peer that stops reading must not hold its connection for ever either: asyncio flushes a
closed transport's buffer before it lets go, which never happens if the peer reads
nothing. So once the application is done with a connection, or the keep-alive gave up on
it, the transport is aborted if it is still open ``2 * close_timeout`` seconds later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol that releases the guard's count and never lingers."""

    on_lost: Callable[[], None] | None = None
    """Set by the HTTP protocol at the upgrade: releases the connection's counts."""
    _abort_timer: asyncio.TimerHandle | None = None
    _lost = False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        release, self.on_lost = self.on_lost, None
        if release is not None:
            release()
        super().connection_lost(exc)

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        self._abort_later()

    async def run_asgi(self) -> None:
        try:
            await super().run_asgi()
        finally:
            self._abort_later()

    def _abort_later(self) -> None:
        """Abort the transport unless it is lost within twice the closing handshake's time."""
        if self._lost or self._abort_timer is not None:
            return
        self._abort_timer = self.loop.call_later(2 * self.close_timeout, self.transport.abort)
