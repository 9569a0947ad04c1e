"""``UpdateConferenceInput`` and its rules, checked before the PBX sees anything.

Every field but ``number`` is optional: a field left out keeps its value on the PBX and
is not sent. ``null`` is refused rather than guessed at (is it "unchanged" or "clear"?);
an empty string clears a PIN and an empty list clears the moderators.

The rules (``pbx-api.md``, ``conference/update``, plus limits the gateway states):

- ``number``: 1 to 15 ASCII digits (as for queries, so no ``all`` or comma list);
- ``name``: 1 to 63 characters, not blank, no leading or trailing space, no control
  characters, and none of ``& ' < > \\ | $ ] "`` or a backtick (the PBX refuses them);
- ``participantPassword`` / ``moderatorPassword``: ASCII digits and ``*`` only, at most
  32 characters; ``""`` removes the PIN;
- ``moderators``: at most 50, each 1 to 15 ASCII digits, no repeats; ``[]`` for none;
- at least one setting besides ``number``.

Every violation is collected and reported at once (:class:`InvalidFieldsError`), each
naming its field by the schema's name. No message ever quotes a PIN.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Any, Final

import strawberry

from gateway import conference_codec as codec
from gateway.conference_codec import Prompt
from gateway.errors import BadInputError, InvalidFieldsError
from gateway.pbx.conference_update import ConferenceChanges
from gateway.schema.numbers import check_numbers
from gateway.schema.types import ConferencePrompt

NAME_MAX_CHARS: Final = 63
PIN_MAX_CHARS: Final = 32
MODERATORS_MAX: Final = 50
FORBIDDEN_NAME_CHARACTERS: Final = "&'<>\\|$]\"`"
"""What the PBX refuses in a room name (``pbx-api.md``)."""

_PIN: Final = re.compile(r"[0-9*]*")
_EXTENSION: Final = re.compile(r"[0-9]{1,15}")

SCHEMA_NAMES: Final = {field.attribute: field.schema for field in codec.CHANGEABLE}
"""Record field name -> the schema's name for it."""

PIN_FIELDS: Final = frozenset(f.attribute for f in codec.CHANGEABLE if f.kind is codec.Kind.PIN)

_KEEP = "leave the field out to keep the current value"


@strawberry.input(
    description=(
        "New settings for one conference room. Give `number` and any of the other fields: "
        "fields left out keep their current value and are not sent to the PBX; `null` is "
        "refused. At least one setting must be given."
    )
)
class UpdateConferenceInput:
    number: str = strawberry.field(
        description='The number of the room to change, such as "6400": 1 to 15 digits.'
    )
    name: str | None = strawberry.field(
        default=strawberry.UNSET,
        description=(
            f"The new display name: 1 to {NAME_MAX_CHARS} characters, not blank, no leading "
            "or trailing space, no control characters, and none of & ' < > \\ | $ ] \" or a "
            "backtick."
        ),
    )
    participant_password: str | None = strawberry.field(
        default=strawberry.UNSET,
        description=(
            f"The new PIN members enter to join: digits and * only, at most {PIN_MAX_CHARS} "
            'characters; "" removes the PIN. Needs the conferences:pins scope.'
        ),
    )
    moderator_password: str | None = strawberry.field(
        default=strawberry.UNSET,
        description=(
            f"The new moderator PIN: digits and * only, at most {PIN_MAX_CHARS} characters; "
            '"" removes the PIN. Needs the conferences:pins scope.'
        ),
    )
    wait_for_moderator: bool | None = strawberry.field(
        default=strawberry.UNSET,
        description="Whether members wait until a moderator joins.",
    )
    allow_invite: bool | None = strawberry.field(
        default=strawberry.UNSET,
        description="Whether members may invite others into the conference from their phone.",
    )
    music_on_hold: bool | None = strawberry.field(
        default=strawberry.UNSET,
        description="Whether a member alone in the room, or waiting for a moderator, hears music.",
    )
    mute: bool | None = strawberry.field(
        default=strawberry.UNSET,
        description="Whether everyone but moderators is muted on entry.",
    )
    moderators: list[str] | None = strawberry.field(
        default=strawberry.UNSET,
        description=(
            f"The extension numbers that are always moderators (replaces the list): at most "
            f"{MODERATORS_MAX}, each 1 to 15 digits, no repeats; [] for none."
        ),
    )
    prompt: ConferencePrompt | None = strawberry.field(
        default=strawberry.UNSET,
        description="What members hear when someone joins or leaves.",
    )

    def given(self) -> tuple[str, ...]:
        """The record field names present in the input (``null`` included), schema order."""
        return tuple(name for name in SCHEMA_NAMES if getattr(self, name) is not strawberry.UNSET)

    def sets_pins(self) -> bool:
        """Whether the input touches a PIN (which needs the conferences:pins scope)."""
        return bool(PIN_FIELDS.intersection(self.given()))


def validate_update(data: UpdateConferenceInput) -> ConferenceChanges:
    """The checked changes, or InvalidFieldsError listing every violation."""
    violations: list[tuple[str, str]] = []
    try:
        check_numbers([data.number])
    except BadInputError:
        violations.append(("number", "must be 1 to 15 digits (0-9) and nothing else"))
    values: dict[str, Any] = {}
    for name in data.given():
        value = getattr(data, name)
        schema_name = SCHEMA_NAMES[name]
        if value is None:
            violations.append((schema_name, _null_rule(name)))
            continue
        rules = _rules_broken(name, value)
        violations += [(schema_name, rule) for rule in rules]
        values[name] = value
    if not data.given():
        settable = ", ".join(SCHEMA_NAMES.values())
        violations.append(("input", f"give at least one setting besides number ({settable})"))
    if violations:
        raise InvalidFieldsError(violations)
    if "moderators" in values:
        values["moderators"] = tuple(values["moderators"])
    if "prompt" in values:
        values["prompt"] = Prompt[values["prompt"].name]  # the names match one to one
    return ConferenceChanges(number=data.number, **values)


def _null_rule(name: str) -> str:
    if name in PIN_FIELDS:
        return f'must not be null: {_KEEP}, or give "" to remove the PIN'
    if name == "moderators":
        return f"must not be null: {_KEEP}, or give [] for no moderators"
    return f"must not be null: {_KEEP}"


def _rules_broken(name: str, value: Any) -> list[str]:
    if name == "name":
        return _name_rules(value)
    if name in PIN_FIELDS:
        return _pin_rules(value)
    if name == "moderators":
        return _moderator_rules(value)
    return []  # booleans and the prompt enum: GraphQL has checked their type already


def _name_rules(name: str) -> list[str]:
    broken: list[str] = []
    if not name.strip():
        return ["must not be empty or blank"]
    if len(name) > NAME_MAX_CHARS:
        broken.append(f"must be at most {NAME_MAX_CHARS} characters (got {len(name)})")
    if name != name.strip():
        broken.append("must not start or end with a space")
    if any(unicodedata.category(char) == "Cc" for char in name):
        broken.append("must not contain control characters such as a line break or tab")
    bad = [char for char in FORBIDDEN_NAME_CHARACTERS if char in name]
    if bad:
        shown = " ".join(bad)
        broken.append(
            f"must not contain {shown} (the PBX refuses & ' < > \\ | $ ] \" and the backtick)"
        )
    return broken


def _pin_rules(pin: str) -> list[str]:
    # Never quote the value: a PIN must not reach an error message or a log.
    broken: list[str] = []
    if not _PIN.fullmatch(pin):
        broken.append('must be digits 0-9 and * only ("" removes the PIN)')
    if len(pin) > PIN_MAX_CHARS:
        broken.append(f"must be at most {PIN_MAX_CHARS} characters")
    return broken


def _moderator_rules(moderators: list[str]) -> list[str]:
    broken: list[str] = []
    if len(moderators) > MODERATORS_MAX:
        broken.append(f"must list at most {MODERATORS_MAX} extensions (got {len(moderators)})")
    bad = [f"moderators[{i}]" for i, n in enumerate(moderators) if not _EXTENSION.fullmatch(n)]
    if bad:
        broken.append(
            f"each must be an extension number of 1 to 15 digits ({', '.join(bad[:5])} is not)"
        )
    counts = Counter(n for n in moderators if _EXTENSION.fullmatch(n))
    repeated = [number for number, count in counts.items() if count > 1]
    if repeated:
        broken.append(f"must not repeat an extension ({', '.join(repeated[:5])})")
    return broken
