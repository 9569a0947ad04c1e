"""The report channel's sending side: ConferenceStatus events, to TCP clients or HTTP push.

pbx-api.md "Events": the PBX sends ``ConferenceStatus`` "when the number of participants
changes", with the full member list and ``sn`` (the PBX's serial number, not a sequence
number), over the report method set on the PBX: TCP (the application's report connections,
``report_tcp``) or HTTP push (POSTs to the address given at login, ``report_push``). One
change makes one event, delivered once to every logged-in TCP connection, or once to every
live push target. ``events=False`` (a firmware without them, or a test proving resync) makes
none; every event also goes to a bounded in-memory log that tests can read.

Changes may come from the admin API on another thread (``run_simulator_in_thread``): the state
runs them on the server's loop through ``on_loop``, and delivery always happens there.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from gateway.simulator.config import SimulatorConfig
from gateway.simulator.live_session import Session
from gateway.simulator.report_push import PushTarget, push_event
from gateway.simulator.stats import SimulatorStats

T = TypeVar("T")
EVENT_LOG_SIZE = 1000
# A report connection whose unsent bytes pass this is closed (a stuck reader, not the PBX's
# problem); chosen, the real buffer size is unknown.
MAX_UNSENT_BYTES = 1 << 20


class ReportConnection(Protocol):
    """A logged-in TCP report connection, as the hub needs it."""

    def send(self, data: bytes) -> int:
        """Queue ``data``; the bytes now waiting to be sent."""

    def close(self) -> None:
        """Close the connection."""


def conference_status(session: Session, *, sn: str) -> dict[str, Any]:
    """The ConferenceStatus event for ``session`` (shape of the S-Series/K2 v2 example)."""
    return {
        "event": "ConferenceStatus",
        "callid": session.callid,
        "conferencenumber": session.number,
        "conferencename": session.name,
        "members": [member.wire(callpath=session.number) for member in session.members],
        "sn": sn,
    }


def tcp_frame(event: dict[str, Any]) -> bytes:
    """One event on a TCP report connection: compact JSON and CRLF (framing chosen)."""
    return json.dumps(event, separators=(",", ":")).encode("utf-8") + b"\r\n"


class ReportHub:
    """Makes events from live changes and hands them to the report method in use."""

    def __init__(
        self,
        config: Callable[[], SimulatorConfig],
        stats: SimulatorStats,
        token_alive: Callable[[str], bool],
    ) -> None:
        self._config, self._stats, self._token_alive = config, stats, token_alive
        self.log: collections.deque[dict[str, Any]] = collections.deque(maxlen=EVENT_LOG_SIZE)
        self.connections: set[ReportConnection] = set()
        self.push_targets: dict[str, PushTarget] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pushes: set[asyncio.Task[None]] = set()
        # Until this time (the state's clock) new report connections are closed at once.
        self.refuse_until = 0.0

    def attach(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """The loop that owns the connections (set by ``SimulatorServer``; None on stop)."""
        self._loop = loop

    def on_loop(self, call: Callable[[], T]) -> T:
        """``call()`` on the server's loop, from any thread, and its result (or its error).

        Live changes go through here, so a test thread and the busy office never change the
        rooms at the same time, and every event is made and sent in order on one loop.
        """
        loop = self._loop
        if loop is None or _running_loop() is loop:
            return call()

        async def run() -> T:
            return call()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=10)

    # --- producing ----------------------------------------------------------------------------

    def room_changed(self, number: str, name: str, session: Session) -> None:
        """A participant came or went in room ``number``: one event (when events are on)."""
        config = self._config()
        counts = self._stats.live
        if not session.members and not config.empty_room_event:
            return
        counts["events_generated"] += 1
        if not config.events:
            counts["events_suppressed"] += 1
            return
        event = conference_status(session, sn=config.device_sn)
        self.log.append(event)
        loop = self._loop
        if loop is None:
            return  # in-process app without a server: nobody can be connected
        if _running_loop() is loop:
            self._deliver(event)
        else:
            loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: dict[str, Any]) -> None:
        config = self._config()
        if config.transport == "TCP":
            frame = tcp_frame(event)
            for connection in list(self.connections):
                if connection.send(frame) > MAX_UNSENT_BYTES:
                    self._stats.live["report_slow_closed"] += 1
                    connection.close()
                    self.connections.discard(connection)
                else:
                    self._stats.live["tcp_events_sent"] += 1
            return
        for token, target in list(self.push_targets.items()):
            if not self._token_alive(token):
                # api-reports.html: HTTP events need a valid token; a dead one gets nothing.
                del self.push_targets[token]
                continue
            task = asyncio.get_running_loop().create_task(
                push_event(target, event, self._config().push_retries, self._stats)
            )
            self._pushes.add(task)
            task.add_done_callback(self._pushes.discard)

    # --- the admin switches ---------------------------------------------------------------

    def drop_all(self, refuse_until: float = 0.0) -> int:
        """Close every TCP report connection (a network break); how many were open.

        With ``refuse_until`` (the state's clock) new connections are closed on arrival until
        then, so a client's reconnect back-off can be seen.
        """
        self.refuse_until = refuse_until
        return self.on_loop(self._drop)

    def _drop(self, *, counted: bool = True) -> int:
        dropped = list(self.connections)
        self.connections.clear()
        for connection in dropped:
            connection.close()
        if counted:
            self._stats.live["report_drops"] += len(dropped)
        return len(dropped)

    async def close(self) -> None:
        """Stopping: close the connections and cancel pushes still under way."""
        self._drop(counted=False)
        for task in list(self._pushes):
            task.cancel()
        for task in list(self._pushes):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loop = None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
