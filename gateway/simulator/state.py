"""The live simulated PBX: its data, tokens, lockouts, faults and counters, plus the admin API.

``SimulatorState`` is reachable as ``app.state.simulator``. Each admin route under
``/__simulator`` is a thin wrapper over one method here, so tests can drive the simulator in
Python or over HTTP alike. Token and lockout times use ``now()``, a monotonic clock that
``advance_time`` can push forward so tests never have to sleep through a timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gateway.simulator.conference_book import ConferenceBook
from gateway.simulator.conference_data import check_all, default_conferences
from gateway.simulator.config import RUNTIME_TUNABLES, SimulatorConfig
from gateway.simulator.faults import (
    DEFAULT_DRIP_INTERVAL,
    DEFAULT_STALL_SECONDS,
    ArmedFault,
    FaultBoard,
    GarbageKind,
)
from gateway.simulator.live_session import Invite, LiveBook, LiveRuleError, invitee_kind
from gateway.simulator.lockout import LoginLockout
from gateway.simulator.report_hub import ReportHub
from gateway.simulator.stats import SimulatorStats
from gateway.simulator.tokens import TokenStore

# Set by SimulatorServer: takes the seconds to stay down (None: until ``come_up``).
DownHandler = Callable[[float | None], None]
_STALL_POLL_SECONDS = 0.02


class DownNeedsServerError(RuntimeError):
    """``go_down`` was asked of an app that is not running under ``SimulatorServer``."""


class SimulatorState:
    """One simulated PBX; see the module docstring."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        rooms = self.config.conferences
        self.book = ConferenceBook(default_conferences() if rooms is None else check_all(rooms))
        self.tokens = TokenStore()
        self.lockout = LoginLockout()
        self.faults = FaultBoard()
        self.stats = SimulatorStats()
        self.reports = ReportHub(
            lambda: self.config,
            self.stats,
            lambda token: self.tokens.is_live(token, self.now(), self.config.token_ttl),
        )
        # Every participant change becomes one ConferenceStatus (report_hub).
        self.live = LiveBook(on_change=self.reports.room_changed)
        self.down_handler: DownHandler | None = None
        self.up_handler: Callable[[], None] | None = None
        self.shutting_down = False
        self._clock_offset = 0.0
        self._serial_lock: asyncio.Lock | None = None
        self._serial_loop: asyncio.AbstractEventLoop | None = None

    # --- time -------------------------------------------------------------------------------

    def now(self) -> float:
        """The simulator's clock (monotonic seconds, plus any ``advance_time``)."""
        return time.monotonic() + self._clock_offset

    def advance_time(self, seconds: float) -> None:
        """Move the token and lockout clock forward, as if ``seconds`` had passed."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        self._clock_offset += seconds

    # --- admin API (one method per admin route) -----------------------------------------------

    def stats_json(self) -> dict[str, Any]:
        """The counters (``GET /__simulator/stats``)."""
        live = self.tokens.live_count(self.now(), self.config.token_ttl)
        return self.stats.to_json(live_tokens=live)

    def reset_stats(self) -> None:
        """Zero the counters and nothing else (``POST /__simulator/reset``)."""
        self.stats.reset()

    def configure(self, **changes: Any) -> SimulatorConfig:
        """Change runtime tunables (``POST /__simulator/config``); validated like at start."""
        refused = sorted(set(changes) - RUNTIME_TUNABLES)
        if refused:
            raise ValueError(f"not changeable at run time: {', '.join(refused)}")
        self.config = dataclasses.replace(self.config, **changes)
        return self.config

    def set_credentials(self, username: str, password: str, *, end_tokens: bool = True) -> None:
        """Someone changed the API user on the PBX (``POST /__simulator/credentials``).

        Chosen answer: existing tokens end too (the PBX restarts its API service on a change).
        """
        self.config = dataclasses.replace(self.config, username=username, password=password)
        if end_tokens:
            self.tokens.clear()

    def expire_tokens(self) -> int:
        """Time out every token now (``POST /__simulator/tokens/expire``); how many were live."""
        return self.tokens.expire_all()

    def unlock_all(self) -> None:
        """Lift every login lockout (``POST /__simulator/lockout/clear``)."""
        self.lockout.unlock_all()

    def set_conferences(self, conferences: Iterable[Mapping[str, Any]]) -> int:
        """Replace the rooms, validated (``PUT /__simulator/conferences``); how many."""
        rooms = check_all(conferences)
        self.book.replace(rooms)
        return len(rooms)

    def fail_next(
        self, count: int, errno: str, endpoint: str | None = None, *, errordata: Any = None
    ) -> None:
        """The next ``count`` calls answer Failed with ``errno`` (``.../faults/fail``), with
        ``errordata`` beside it when given."""
        self.faults.arm(ArmedFault("fail", count, endpoint, errno=str(errno), errordata=errordata))

    def garbage_next(self, count: int, kind: GarbageKind, endpoint: str | None = None) -> None:
        """The next ``count`` calls answer garbage of ``kind`` (``.../faults/garbage``)."""
        self.faults.arm(ArmedFault("garbage", count, endpoint, garbage=kind))

    def drop_next(self, count: int, endpoint: str | None = None) -> None:
        """The next ``count`` calls lose their connection mid-answer (``.../faults/drop``)."""
        self.faults.arm(ArmedFault("drop", count, endpoint))

    def stall_next(
        self, count: int, seconds: float = DEFAULT_STALL_SECONDS, endpoint: str | None = None
    ) -> None:
        """The next ``count`` calls hang up to ``seconds`` or until cleared (``.../stall``)."""
        self.faults.arm(ArmedFault("stall", count, endpoint, seconds=seconds))

    def drip_next(
        self, count: int, interval: float = DEFAULT_DRIP_INTERVAL, endpoint: str | None = None
    ) -> None:
        """The next ``count`` answers go out one byte every ``interval`` seconds (``.../drip``)."""
        self.faults.arm(ArmedFault("drip", count, endpoint, interval=interval))

    def clear_faults(self) -> None:
        """Disarm every fault and release stalled calls (``POST /__simulator/faults/clear``)."""
        self.faults.clear()

    def go_down(self, seconds: float | None = None) -> None:
        """Refuse TCP connections for ``seconds`` (``POST /__simulator/faults/down``)."""
        if self.down_handler is None:
            raise DownNeedsServerError(
                "'down' closes the listening socket, so it needs the app to run under "
                "gateway.simulator.server.SimulatorServer (or the simulator command)"
            )
        self.down_handler(seconds)

    def come_up(self) -> None:
        """Accept connections again after ``go_down`` (Python only: a down server has no API)."""
        if self.up_handler is None:
            raise DownNeedsServerError("'come_up' needs the app to run under SimulatorServer")
        self.up_handler()

    # --- live conferences (admin API: ``/__simulator/live/...``) -------------------------------

    def _room(self, number: str) -> Any:
        room = self.book.get(str(number))
        if room is None:
            raise LiveRuleError(f"no conference {number!r}")
        return room

    # Each live change runs on the server's loop (``reports.on_loop``), from whatever thread.

    def live_join(
        self,
        number: str,
        member: str,
        *,
        kind: str = "ext",
        moderator: bool | None = None,
        trunk: str = "",
        to: str = "",
    ) -> dict[str, Any]:
        """``member`` dials into room ``number`` (``POST /__simulator/live/join``).

        ``kind`` is ext, inbound (an outside caller; ``to`` is the number they dialled) or
        outbound; ``moderator`` defaults to whether an extension is one of the room's
        moderators (True: joined with the moderator PIN). One ConferenceStatus follows.
        """
        joined = self.live.join(
            self._room(number),
            member,
            now=self.now(),
            kind=kind,
            moderator=moderator,
            trunk=trunk,
            other=to,
        )
        return joined.admin_view(self.now())

    def live_leave(self, number: str, member: str) -> dict[str, Any]:
        """``member`` (number or channel id) hangs up (``POST /__simulator/live/leave``)."""
        left = self.reports.on_loop(lambda: self.live.leave(self._room(number), member))
        return left.admin_view(self.now())

    def live_mute(self, number: str, member: str, muted: bool = True) -> dict[str, Any]:
        """Mute or unmute a member (``POST /__simulator/live/mute``); no event (no count change)."""
        changed = self.reports.on_loop(lambda: self.live.set_muted(str(number), member, muted))
        return changed.admin_view(self.now())

    def live_invite(self, number: str, member: str, dialpermission: str = "") -> None:
        """Call ``member`` to room ``number`` as ``add_member`` would, without an operator."""
        invite = Invite(invitee_kind(member), member, dialpermission)
        self.reports.on_loop(lambda: self.live.ring(str(number), invite))
        if self.config.invitees_answer:
            self.live_answer(number, member)

    def live_answer(self, number: str, member: str) -> dict[str, Any]:
        """A ringing invitee picks up and joins with ANSWER (``POST /__simulator/live/answer``)."""
        joined = self.reports.on_loop(
            lambda: self.live.pick_up(self._room(number), member, now=self.now())
        )
        return joined.admin_view(self.now())

    def live_decline(self, number: str, member: str) -> None:
        """A ringing invitee does not pick up (``POST /__simulator/live/decline``)."""
        self.reports.on_loop(lambda: self.live.decline(str(number), member))

    def live_clear(self, number: str | None = None) -> int:
        """Everyone in room ``number`` (all rooms when None) hangs up (``.../live/clear``)."""
        rooms = self.book.all() if number is None else [self._room(number)]
        return self.reports.on_loop(lambda: self.live.clear(rooms))

    def live_json(self) -> dict[str, Any]:
        """Every room in session with all the simulator knows (``GET /__simulator/live``)."""
        now = self.now()
        return {
            "sessions": [
                {
                    "number": session.number,
                    "name": session.name,
                    "callid": session.callid,
                    "members": [member.admin_view(now) for member in session.members],
                    "ringing": [invite.number for invite in session.ringing],
                }
                for session in self.live.sessions()
            ],
            "report_connections": len(self.reports.connections),
            "push_targets": len(self.reports.push_targets),
        }

    def live_events(self) -> list[dict[str, Any]]:
        """The last events made, oldest first (``GET /__simulator/live/events``)."""
        return list(self.reports.log)

    def drop_report_channel(self, refuse_seconds: float = 0.0) -> int:
        """Close every TCP report connection (``POST /__simulator/live/report/drop``); with
        ``refuse_seconds``, new ones are closed on arrival for that long (state clock)."""
        if refuse_seconds < 0:
            raise ValueError(f"refuse_seconds must be >= 0, got {refuse_seconds}")
        until = self.now() + refuse_seconds if refuse_seconds else 0.0
        return self.reports.drop_all(until)

    # --- used while answering calls -----------------------------------------------------------

    def serial_lock(self) -> asyncio.Lock:
        """The lock that makes ``serial`` mode one-at-a-time, bound to the running loop."""
        loop = asyncio.get_running_loop()
        if self._serial_lock is None or self._serial_loop is not loop:
            self._serial_lock, self._serial_loop = asyncio.Lock(), loop
        return self._serial_lock

    async def delay(self) -> None:
        """The configured latency plus a random share of the jitter."""
        seconds = self.config.latency + random.uniform(0.0, self.config.jitter)  # noqa: S311
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def stall(self, seconds: float) -> None:
        """Hang for ``seconds``, or until faults are cleared or the app shuts down."""
        generation = self.faults.generation
        deadline = time.monotonic() + seconds
        # Polling rather than an asyncio.Event: clearing may come from another thread or loop.
        while not self.shutting_down and generation == self.faults.generation:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(_STALL_POLL_SECONDS, remaining))

    def release_stalls(self) -> None:
        """Shutting down: every stalled call goes on at once, so shutdown never waits on one."""
        self.shutting_down = True
