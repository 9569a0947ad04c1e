"""Stale answers, marked: what one request was served from the last known data, and why.

When the PBX cannot answer, the store serves each conference's last known value (up to
``GATEWAY_STALE_TTL``) instead of an error, and notes it here. The GraphQL response then
carries ``extensions.stale`` so a frontend can say "last updated 5 minutes ago"::

    "extensions": {"stale": {
        "code": "PBX_UNAVAILABLE",
        "message": "the PBX did not answer conference/query ...",
        "oldestAgeSeconds": 312.4,
        "conferences": [{"number": "6400", "ageSeconds": 312.4, "fetchedAt": "2026-...Z"}],
        "allConferences": {"ageSeconds": 312.4, "fetchedAt": "2026-...Z"}
    }}

``allConferences`` is present when a ``conferences`` list without arguments was stale.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.errors import GatewayError


@dataclass(frozen=True, slots=True)
class StaleServe:
    """One stale answer: how old it is and the error that kept it from being fresh."""

    age: float
    error: GatewayError


@dataclass
class StaleReport:
    """Collects one request's stale answers (the store writes, the response reads)."""

    numbers: dict[str, StaleServe] = field(default_factory=dict)
    listing: StaleServe | None = None

    def __bool__(self) -> bool:
        return bool(self.numbers) or self.listing is not None

    def add(self, number: str, age: float, error: GatewayError) -> None:
        """Note that ``number`` was served ``age`` seconds old because of ``error``."""
        self.numbers.setdefault(number, StaleServe(age, error))

    def add_listing(self, age: float, error: GatewayError) -> None:
        """Note that the list of all conferences was served ``age`` seconds old."""
        self.listing = StaleServe(age, error)

    def as_json(self, *, now: float | None = None) -> dict[str, Any]:
        """The ``extensions.stale`` object."""
        wall = time.time() if now is None else now
        serves = [*self.numbers.values(), *([self.listing] if self.listing else [])]
        first = serves[0].error
        report: dict[str, Any] = {
            "code": first.code,
            "message": first.message,
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
    return {
        "ageSeconds": round(serve.age, 3),
        "fetchedAt": fetched.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
