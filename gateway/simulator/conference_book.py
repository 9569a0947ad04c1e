"""The rooms the simulated PBX holds, looked up by number and changed by ``conference/update``.

There is no add or delete in the API (rooms are created in the PBX web UI), so the book only
answers lookups and applies validated partial updates, all-or-nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gateway.simulator.conference_rules import (
    FIELDS,
    Conference,
    ConferenceFieldError,
    check_field,
)


class UnknownConferenceError(LookupError):
    """``conference/update`` named a number the PBX does not have."""


def split_numbers(raw: str) -> list[str]:
    """The numbers of a ``"6400,6401"`` request, in order, without blanks or repeats."""
    # Chosen answer: blanks around commas and repeated numbers are tolerated, not errors.
    parts = (part.strip() for part in raw.split(","))
    return list(dict.fromkeys(part for part in parts if part))


class ConferenceBook:
    """Conferences by number; iteration order is numeric, as ``all`` answers them."""

    def __init__(self, conferences: Iterable[Conference]) -> None:
        self._rooms: dict[str, Conference] = {}
        self.replace(conferences)

    def replace(self, conferences: Iterable[Conference]) -> None:
        """Swap the whole set (already validated) for another."""
        ordered = sorted(conferences, key=lambda room: (len(room["number"]), room["number"]))
        self._rooms = {room["number"]: dict(room) for room in ordered}

    def __len__(self) -> int:
        return len(self._rooms)

    def all(self) -> list[Conference]:
        """Every room, numeric order."""
        return list(self._rooms.values())

    def get(self, number: str) -> Conference | None:
        """One room, or None."""
        return self._rooms.get(number)

    def lookup(self, numbers: Iterable[str]) -> tuple[list[Conference], list[str]]:
        """The rooms found (request order) and the numbers that were not."""
        found: list[Conference] = []
        unknown: list[str] = []
        for number in numbers:
            room = self._rooms.get(number)
            if room is None:
                unknown.append(number)
            else:
                found.append(room)
        return found, unknown

    def update(self, fields: Mapping[str, Any]) -> Conference:
        """Apply the known fields of an update body to the room it names; all or nothing.

        Raises ``UnknownConferenceError`` or ``ConferenceFieldError`` (naming the first bad
        field); keys that are not conference fields are ignored, as a lenient CGI would.
        """
        number = fields["number"]
        room = self._rooms.get(number)
        if room is None:
            raise UnknownConferenceError(number)
        changes: dict[str, str] = {}
        for field in FIELDS:
            if field != "number" and field in fields:
                changes[field] = check_field(field, fields[field])
        room.update(changes)
        return room


__all__ = ["ConferenceBook", "ConferenceFieldError", "UnknownConferenceError", "split_numbers"]
