"""Where the simulated rooms come from: a realistic default set, generated sets, JSON files.

The default dozen rooms start at 6400 like the doc's examples and cover each wire shape the
gateway must decode: moderators ``""``, ``"4000"`` and ``"4000,4001"``, PINs with ``*``, every
``prompt`` value. ``generate_conferences`` builds large sets (100,000 rooms well under a second)
for load tests without going through validation, because its values are valid by construction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from gateway.simulator.conference_rules import FIELDS, Conference, check_conference

# (name, participant PIN, moderator PIN, wait, invite, moderators, music, mute, prompt)
_DEFAULT_ROOMS: tuple[tuple[str, ...], ...] = (
    ("Sales", "", "", "no", "yes", "", "yes", "no", "default"),
    ("PM", "3201", "", "no", "yes", "", "yes", "no", "default"),
    ("Board Room", "1234", "9876", "yes", "no", "4000", "yes", "yes", "exten"),
    ("Support Bridge", "", "*55", "no", "yes", "4000,4001", "no", "no", "none"),
    ("Engineering Stand-up", "2468", "", "no", "yes", "4002", "yes", "no", "default"),
    ("All Hands", "1000", "1001", "yes", "no", "4000,4001,4003", "yes", "yes", "default"),
    ("Customer Escalations", "55*1", "8080", "yes", "yes", "4005", "no", "no", "exten"),
    ("Finance (Q-close)", "7070", "7071", "no", "no", "", "yes", "no", "none"),
    ("Partners: EMEA", "", "", "no", "yes", "4010,4011", "yes", "no", "default"),
    ("Night Shift", "0000", "", "no", "yes", "", "no", "yes", "exten"),
    ("Training Room 1", "4321", "1357", "yes", "yes", "4020", "yes", "no", "default"),
    ("Réunion Lyon", "", "2020", "no", "no", "4000", "yes", "no", "none"),
)
_VALUE_FIELDS = FIELDS[1:]  # every wire field after "number", in the same order
MAX_GENERATED = 100_000


class ConferenceDataError(ValueError):
    """A conference data set (usually a JSON file) is not what the simulator can serve."""


def default_conferences() -> list[Conference]:
    """Twelve realistic rooms, 6400 to 6411."""
    return [
        {"number": str(6400 + index), **dict(zip(_VALUE_FIELDS, room, strict=True))}
        for index, room in enumerate(_DEFAULT_ROOMS)
    ]


def generate_conferences(count: int, *, first_number: int = 6400) -> list[Conference]:
    """``count`` valid rooms numbered from ``first_number``, varied but deterministic."""
    if not 0 <= count <= MAX_GENERATED:
        raise ValueError(f"count must be between 0 and {MAX_GENERATED}, got {count}")
    yes_no = ("yes", "no")
    prompts = ("default", "exten", "none")
    moderators = ("", "4000", "4000,4001", "4002")
    rooms: list[Conference] = []
    append = rooms.append  # a hot loop: 100,000 rooms must stay well under a second
    for index in range(count):
        number = first_number + index
        append(
            {
                "number": str(number),
                "name": f"Room {number}",
                "participantepassword": "" if index % 3 == 0 else f"{number % 10000:04d}",
                "moderatorpassword": "" if index % 2 == 0 else f"*{index % 1000:03d}",
                "waitformoderator": yes_no[index % 2],
                "allowinvite": yes_no[index % 3 == 0],
                "moderators": moderators[index % 4],
                "musiconhold": yes_no[index % 5 == 0],
                "mute": yes_no[index % 7 != 0],
                "prompt": prompts[index % 3],
            }
        )
    return rooms


def parse_conferences(data: Any, *, source: str = "data") -> list[Conference]:
    """Validated conferences from a list of wire objects or ``{"conferences": [...]}``."""
    if isinstance(data, Mapping) and "conferences" in data:
        data = data["conferences"]
    if not isinstance(data, list):
        raise ConferenceDataError(
            f"{source}: expected a list of conferences or an object with a "
            f"'conferences' list, got {type(data).__name__}"
        )
    return check_all(data, source=source)


def check_all(records: Iterable[Any], *, source: str = "data") -> list[Conference]:
    """Every record validated, numbers unique; errors name the record and the field."""
    rooms: list[Conference] = []
    seen: set[str] = set()
    for position, raw in enumerate(records):
        label = f"{source}: conference #{position}"
        if isinstance(raw, Mapping) and isinstance(raw.get("number"), str):
            label += f" (number {raw['number']!r})"
        try:
            room = check_conference(dict(raw) if isinstance(raw, Mapping) else raw)
        except ValueError as exc:
            raise ConferenceDataError(f"{label}: {exc}") from exc
        if room["number"] in seen:
            raise ConferenceDataError(f"{label}: duplicate number")
        seen.add(room["number"])
        rooms.append(room)
    return rooms


def load_conferences(path: str | Path) -> list[Conference]:
    """Validated conferences from a JSON file (see ``parse_conferences`` for the shapes)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConferenceDataError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConferenceDataError(f"{path}: not valid JSON: {exc}") from exc
    return parse_conferences(data, source=str(path))
