"""The busy office: a scripted, seeded stream of people joining and leaving rooms, for demos.

Each ``step`` makes one change through the same ``SimulatorState.live_*`` calls the admin API
uses (so each change is one ConferenceStatus): an extension or an outside caller joins one of
the first ``ROOMS`` rooms, or someone in session hangs up. Everything comes from one
``random.Random(seed)`` and the current state, so the same seed from the same start gives the
same changes in the same order. ``run`` steps every ``interval`` seconds (never more often
than ``config.MIN_BUSY_INTERVAL``), and the office never holds more than ``MAX_PEOPLE``
people or ``MAX_PER_ROOM`` in one room: a bounded load.
"""

from __future__ import annotations

import asyncio
import random

from gateway.simulator.config import MIN_BUSY_INTERVAL
from gateway.simulator.live_session import LiveRuleError
from gateway.simulator.state import SimulatorState

ROOMS = 6
MAX_PER_ROOM = 6
MAX_PEOPLE = 20
# Extensions 4000-4029 (the default rooms' moderators are among them) and outside callers.
EXTENSIONS = tuple(str(4000 + n) for n in range(30))
JOIN_SHARE = 0.6
INBOUND_SHARE = 0.2


class BusyOffice:
    """One seeded script over one simulator state."""

    def __init__(self, state: SimulatorState, seed: int = 0, interval: float = 2.0) -> None:
        if interval < MIN_BUSY_INTERVAL:
            raise ValueError(f"interval must be >= {MIN_BUSY_INTERVAL}, got {interval!r}")
        self.state, self.interval = state, interval
        self._random = random.Random(seed)  # noqa: S311 - a demo script, not security
        self.steps = 0

    def step(self) -> str:
        """Make one change; what it was, e.g. ``"join 6402 ext 4003"``."""
        self.steps += 1
        state, pick = self.state, self._random
        rooms = state.book.all()[:ROOMS]
        people = state.live.member_count()
        if not rooms:
            return "idle"
        if people == 0 or (people < MAX_PEOPLE and pick.random() < JOIN_SHARE):
            room = pick.choice(rooms)
            session = state.live.session(room["number"])
            if session is None or len(session.members) < MAX_PER_ROOM:
                return self._join(room["number"])
        sessions = state.live.sessions()
        session = pick.choice(sessions)
        member = pick.choice(session.members)
        state.live_leave(session.number, member.channelid)
        return f"leave {session.number} {member.kind} {member.number}"

    def _join(self, room: str) -> str:
        pick = self._random
        if pick.random() < INBOUND_SHARE:
            caller = "0" + "".join(pick.choice("0123456789") for _ in range(9))
            kind = "inbound"
        else:
            caller, kind = pick.choice(EXTENSIONS), "ext"
        try:
            self.state.live_join(room, caller, kind=kind)
        except LiveRuleError:
            return f"busy {room} {kind} {caller}"  # already there: this step changes nothing
        return f"join {room} {kind} {caller}"

    async def run(self) -> None:
        """Step every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            self.step()
