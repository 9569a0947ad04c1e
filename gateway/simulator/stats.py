"""What the simulated PBX has seen, for tests and benchmarks to assert on.

Only API calls and the report channel count (admin calls under ``/__simulator`` never do).
``max_in_flight`` is the
highest number of API requests ever inside the simulator at once, which is how a test proves the
gateway's concurrency cap; requests waiting for the ``serial`` lock count as in flight because the
client sent them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SimulatorStats:
    """Counters since start or the last reset."""

    calls: Counter[str] = field(default_factory=Counter)
    query_numbers: list[str] = field(default_factory=list)
    logins_succeeded: int = 0
    logins_failed: int = 0
    logins_locked: int = 0
    heartbeats: int = 0
    heartbeats_refused: int = 0
    logouts: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    # Numbers ``conference/query_in_session`` received, like ``query_numbers``.
    in_session_numbers: list[str] = field(default_factory=list)
    # Live conferences: member actions done (kick, mute, unmute, invite) and refused, events
    # made, suppressed and sent, report logins, drops and pushes (keys in the README).
    live: Counter[str] = field(default_factory=Counter)

    def enter(self) -> None:
        """An API request arrived."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        """An API request was answered."""
        self.in_flight -= 1

    def reset(self) -> None:
        """Zero the counters; requests in flight now stay counted as in flight."""
        fresh = SimulatorStats(in_flight=self.in_flight, max_in_flight=self.in_flight)
        vars(self).update(vars(fresh))

    def to_json(self, *, live_tokens: int) -> dict[str, Any]:
        """The ``GET /__simulator/stats`` body."""
        return {
            "calls": dict(self.calls),
            "query_numbers": list(self.query_numbers),
            "logins_succeeded": self.logins_succeeded,
            "logins_failed": self.logins_failed,
            "logins_locked": self.logins_locked,
            "live_tokens": live_tokens,
            "heartbeats": self.heartbeats,
            "heartbeats_refused": self.heartbeats_refused,
            "logouts": self.logouts,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "in_session_numbers": list(self.in_session_numbers),
            "live": dict(self.live),
        }
