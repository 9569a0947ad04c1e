"""The PBX's bad days that are counted in calls: fail, garbage, drop, stall, drip.

Each kind is armed for the next ``count`` API calls (``-1``: until cleared), optionally only for
one endpoint. A call may be stalled first and then still get one answer fault (drop, garbage or
fail, in that order of precedence); whatever its answer, a drip then sends it one byte every
``interval`` seconds (a client whose timeout is per chunk never times out). Clearing bumps
``generation``, which is what releases stalled calls early and hurries drips (they poll it,
so clearing works from any thread or event loop).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

FaultKind = Literal["fail", "garbage", "drop", "stall", "drip"]
GarbageKind = Literal["html", "truncated", "empty", "500"]
GARBAGE_KINDS: tuple[str, ...] = get_args(GarbageKind)
FOREVER = -1
DEFAULT_STALL_SECONDS = 3600.0
DEFAULT_DRIP_INTERVAL = 0.5
_ANSWER_KINDS: tuple[FaultKind, ...] = ("drop", "garbage", "fail")


@dataclass
class ArmedFault:
    """One armed fault: what, how many calls are left (-1 forever), and for which endpoint."""

    kind: FaultKind
    remaining: int
    endpoint: str | None = None
    errno: str = ""
    # What a real failure may carry besides its errno (pbx-api.md: one was seen with it).
    errordata: Any = None
    garbage: GarbageKind = "html"
    seconds: float = DEFAULT_STALL_SECONDS
    interval: float = DEFAULT_DRIP_INTERVAL

    def __post_init__(self) -> None:
        if self.remaining < FOREVER or self.remaining == 0:
            raise ValueError(f"count must be >= 1 or -1 (until cleared), got {self.remaining}")
        if self.kind == "fail" and not (self.errno.isascii() and self.errno.isdigit()):
            raise ValueError(f"errno must be a string of digits, got {self.errno!r}")
        if self.garbage not in GARBAGE_KINDS:
            raise ValueError(
                f"kind must be one of {', '.join(GARBAGE_KINDS)}, got {self.garbage!r}"
            )
        if self.seconds <= 0:
            raise ValueError(f"seconds must be > 0, got {self.seconds}")
        if not 0 < self.interval <= 60:
            raise ValueError(f"interval must be > 0 and <= 60, got {self.interval}")

    def applies_to(self, endpoint: str | None) -> bool:
        """Whether a call to ``endpoint`` (None: unknown endpoint) triggers this fault."""
        return self.endpoint is None or self.endpoint == endpoint

    def describe(self) -> dict[str, Any]:
        """JSON-ready, only the fields that matter for this kind."""
        keep = {"kind", "remaining", "endpoint"} | {
            "fail": {"errno", "errordata"},
            "garbage": {"garbage"},
            "stall": {"seconds"},
            "drip": {"interval"},
            "drop": set(),
        }[self.kind]
        if self.errordata is None:
            keep.discard("errordata")
        return {key: value for key, value in asdict(self).items() if key in keep}


class FaultBoard:
    """The armed faults, at most one per kind (arming a kind again replaces it)."""

    def __init__(self) -> None:
        self._armed: dict[FaultKind, ArmedFault] = {}
        self.generation = 0

    def arm(self, fault: ArmedFault) -> None:
        """Arm (or re-arm) ``fault.kind``."""
        self._armed[fault.kind] = fault

    def clear(self) -> None:
        """Disarm everything and release stalled calls."""
        self._armed.clear()
        self.generation += 1

    def armed(self) -> list[dict[str, Any]]:
        """What is armed, JSON-ready."""
        return [fault.describe() for fault in self._armed.values()]

    def _take(self, kind: FaultKind, endpoint: str | None) -> ArmedFault | None:
        fault = self._armed.get(kind)
        if fault is None or not fault.applies_to(endpoint):
            return None
        if fault.remaining != FOREVER:
            fault.remaining -= 1
            if fault.remaining == 0:
                del self._armed[kind]
        return fault

    def take_stall(self, endpoint: str | None) -> ArmedFault | None:
        """The stall this call must sit through, if any (consumes one count)."""
        return self._take("stall", endpoint)

    def take_drip(self, endpoint: str | None) -> ArmedFault | None:
        """The drip this call's answer must go out at, if any (consumes one count)."""
        return self._take("drip", endpoint)

    def take_answer(self, endpoint: str | None) -> ArmedFault | None:
        """The fault that replaces this call's answer, if any (consumes one count)."""
        for kind in _ANSWER_KINDS:
            fault = self._take(kind, endpoint)
            if fault is not None:
                return fault
        return None
