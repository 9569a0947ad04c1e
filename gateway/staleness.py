"""Stale answers, marked: what one request was served from the last known data, and why.

Nothing older than ``GATEWAY_CACHE_TTL`` is ever presented as fresh. When the PBX cannot
answer, the store serves each conference's last known value (up to ``GATEWAY_STALE_TTL``)
instead of an error; within ``GATEWAY_REVALIDATE_WINDOW`` after the TTL it serves the
expired value at once while a background refresh runs. Either way it notes it here, and the
GraphQL response carries ``extensions.stale`` so a frontend can say "last updated 5
minutes ago"::

    "extensions": {"stale": {
        "code": "PBX_UNAVAILABLE",
        "message": "the PBX did not answer conference/query ...",
        "oldestAgeSeconds": 312.4,
        "conferences": [{"number": "6400", "ageSeconds": 312.4, "fetchedAt": "2026-...Z"}],
        "allConferences": {"ageSeconds": 312.4, "fetchedAt": "2026-...Z"}
    }}

``allConferences`` is present when a ``conferences`` list without arguments was stale.

An expired answer served while its refresh is still running, with no failure known, has
no error: its entry says ``"revalidating": true``, and when every stale answer of the
request is such, ``code`` is ``REVALIDATING``. Once a refresh has failed, the entry is
served with that failure (``PBX_UNAVAILABLE``, ...) until a refresh succeeds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from gateway.errors import GatewayError

REVALIDATING: Final = "REVALIDATING"
"""``extensions.stale.code`` when every stale answer is only past its TTL, being refreshed."""
REVALIDATING_MESSAGE: Final = (
    "served from the cache past GATEWAY_CACHE_TTL while the gateway refreshes it from the PBX"
)


@dataclass(frozen=True, slots=True)
class StaleServe:
    """One stale answer: how old it is and the error that kept it from being fresh."""

    age: float
    error: GatewayError | None
    """Why it is not fresh; None: it expired and a refresh is under way (nothing failed)."""


@dataclass
class StaleReport:
    """Collects one request's stale answers (the store writes, the response reads)."""

    numbers: dict[str, StaleServe] = field(default_factory=dict)
    listing: StaleServe | None = None

    def __bool__(self) -> bool:
        return bool(self.numbers) or self.listing is not None

    def add(self, number: str, age: float, error: GatewayError | None) -> None:
        """Note that ``number`` was served ``age`` seconds old because of ``error`` (None:
        past its TTL while a refresh runs)."""
        self.numbers.setdefault(number, StaleServe(age, error))

    def add_listing(self, age: float, error: GatewayError | None) -> None:
        """Note that the list of all conferences was served ``age`` seconds old."""
        self.listing = StaleServe(age, error)

    def as_json(self, *, now: float | None = None) -> dict[str, Any]:
        """The ``extensions.stale`` object."""
        wall = time.time() if now is None else now
        serves = [*self.numbers.values(), *([self.listing] if self.listing else [])]
        first = next((s.error for s in serves if s.error is not None), None)
        report: dict[str, Any] = {
            "code": REVALIDATING if first is None else first.code,
            "message": REVALIDATING_MESSAGE if first is None else first.message,
            "oldestAgeSeconds": round(max(s.age for s in serves), 3),
            "conferences": [
                {"number": number, **_age(serve, wall)} for number, serve in self.numbers.items()
            ],
        }
        if self.listing is not None:
            report["allConferences"] = _age(self.listing, wall)
        return report


def _age(serve: StaleServe, wall: float) -> dict[str, Any]:
    fetched = datetime.fromtimestamp(wall - serve.age, tz=UTC)
    age: dict[str, Any] = {
        "ageSeconds": round(serve.age, 3),
        "fetchedAt": fetched.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    if serve.error is None:
        age["revalidating"] = True
    return age
