"""A conference room's fields, written out once: PBX wire name, record attribute, schema name.

Every module that handles a room's fields derives them from :data:`FIELDS`: the PBX client's
tolerant reader (:mod:`gateway.pbx.conferences`) and its ``conference/update`` writer
(:mod:`gateway.pbx.conference_update`), the update input's rules
(:mod:`gateway.schema.conference_update_input`), the fleet cache's JSON form
(:mod:`gateway.fleet.cache`) and the simulator's wire rules
(:mod:`gateway.simulator.conference_rules`). A leaf module: it imports nothing of the
gateway, so the simulator, which must stay free of the gateway, may import it.

The wire format (``pbx-api.md``, Query conferences) is all strings: flags ``yes``/``no``,
``moderators`` a comma list, ``prompt`` lower-case, and the API's own spelling
``participantepassword``. The readers here are tolerant: a value they cannot read is
``None`` ("not reported"), never an exception.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

ALL: Final = "all"
"""``conference/query``'s ``number`` for every room, and the key of the ``all`` listing."""


class Kind(enum.Enum):
    """What a field's value is, which decides how it is read, written and kept."""

    TEXT = "text"
    PIN = "pin"
    """Digits and ``*``; ``""`` for no PIN."""
    YES_NO = "yes/no"
    LIST = "list"
    """A comma list of extension numbers on the wire; a tuple in the record."""
    ENUM = "enum"
    """A :class:`Prompt` in the record; its lower-case value on the wire."""


class Prompt(enum.Enum):
    """What members hear when someone joins or leaves."""

    DEFAULT = "default"
    EXTEN = "exten"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a room, by each of its names."""

    wire: str
    """The PBX's name, as ``conference/update`` takes it (and ``conference/query`` sends it)."""
    attribute: str
    """The record's (:class:`gateway.pbx.conferences.Conference`) and the fleet cache's."""
    schema: str
    """The GraphQL schema's."""
    kind: Kind
    also_read: tuple[str, ...] = ()
    """Other wire names a reader accepts, after :attr:`wire`."""

    @property
    def wire_names(self) -> tuple[str, ...]:
        """The wire names this field is read from, first match wins."""
        return (self.wire, *self.also_read)


NUMBER: Final = Field("number", "number", "number", Kind.TEXT)
NAME: Final = Field("name", "name", "name", Kind.TEXT)
SETTINGS: Final[tuple[Field, ...]] = (
    # sic, then the plain spelling should a firmware correct it
    Field(
        "participantepassword",
        "participant_password",
        "participantPassword",
        Kind.PIN,
        also_read=("participantpassword",),
    ),
    Field("moderatorpassword", "moderator_password", "moderatorPassword", Kind.PIN),
    Field("waitformoderator", "wait_for_moderator", "waitForModerator", Kind.YES_NO),
    Field("allowinvite", "allow_invite", "allowInvite", Kind.YES_NO),
    Field("moderators", "moderators", "moderators", Kind.LIST),
    Field("musiconhold", "music_on_hold", "musicOnHold", Kind.YES_NO),
    Field("mute", "mute", "mute", Kind.YES_NO),
    Field("prompt", "prompt", "prompt", Kind.ENUM),
)
"""The settings: what a firmware may leave out (a room needs only its number and name)."""
CHANGEABLE: Final[tuple[Field, ...]] = (NAME, *SETTINGS)
"""What ``conference/update`` may set, in the wire's order."""
FIELDS: Final[tuple[Field, ...]] = (NUMBER, *CHANGEABLE)
"""Every field, in the order the PBX sends them."""
WIRE_NAMES: Final[tuple[str, ...]] = tuple(field.wire for field in FIELDS)
BY_ATTRIBUTE: Final[Mapping[str, Field]] = {field.attribute: field for field in FIELDS}

_YES: Final = frozenset({"yes", "true", "1", "on"})
_NO: Final = frozenset({"no", "false", "0", "off"})


def text(value: object) -> str:
    """A wire value as text: strings stripped, numbers written out, anything else ``""``."""
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float):
        return str(value)
    return ""


def _pin(value: object) -> str | None:
    """The PIN, ``""`` for none; None when it is not text (unreadable)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return text(value)


def _flag(value: object) -> bool | None:
    """``yes``/``no`` in any case (or a JSON boolean); None for anything else."""
    if isinstance(value, bool):
        return value
    word = text(value).lower()
    if word in _YES:
        return True
    if word in _NO:
        return False
    return None


def _moderators(value: object) -> tuple[str, ...] | None:
    """``""`` / ``"4000"`` / ``"4000,4001"`` / ``4000`` / a list, as extension numbers;
    None for anything else (an object, a boolean)."""
    if not isinstance(value, str | int | float | list) or isinstance(value, bool):
        return None
    parts = [text(item) for item in value] if isinstance(value, list) else text(value).split(",")
    return tuple(part.strip() for part in parts if part.strip())


def _prompt(value: object) -> Prompt | None:
    # An unexpected value is reported as "not reported" rather than failing the room.
    try:
        return Prompt(text(value).lower())
    except ValueError:
        return None


_READERS: Final[Mapping[Kind, Callable[[object], Any]]] = {
    Kind.TEXT: text,
    Kind.PIN: _pin,
    Kind.YES_NO: _flag,
    Kind.LIST: _moderators,
    Kind.ENUM: _prompt,
}


def read(field: Field, value: object) -> Any:
    """A wire value as the record holds it; None when it cannot be read."""
    return _READERS[field.kind](value)


def write(field: Field, value: Any) -> str:
    """A record value as ``conference/update`` takes it: always a string."""
    if field.kind is Kind.YES_NO:
        return "yes" if value else "no"
    if field.kind is Kind.ENUM:
        return str(value.value)  # "default" / "exten" / "none"
    if field.kind is Kind.LIST:
        return ",".join(value)  # "" when there are none
    return str(value)


def to_plain(field: Field, value: Any) -> Any:
    """A record value as JSON (the fleet cache's form); None stays None."""
    if value is None:
        return None
    if field.kind is Kind.LIST:
        return list(value)
    if field.kind is Kind.ENUM:
        return value.value
    return value


def from_plain(field: Field, value: Any) -> Any:
    """:func:`to_plain`'s inverse; ValueError or TypeError for another shape."""
    if value is None:
        return None
    if field.kind is Kind.LIST:
        return tuple(str(item) for item in value)
    if field.kind is Kind.ENUM:
        return Prompt(value)
    return value
