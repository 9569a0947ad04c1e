"""Conference records: the PBX's wire format decoded into a typed, immutable record.

The wire format (``pbx-api.md``, Query conferences) is all strings, with quirks this
module absorbs so nothing above it has to: ``moderators`` as ``""``, ``"4000"``,
``"4000,4001"`` or a bare JSON number; flags as ``yes``/``no`` in any case (or a JSON
boolean); unknown extra keys; the API's own spelling ``participantepassword`` (and the
plain ``participantpassword``, should a firmware correct it).

A tolerant reader: firmware builds differ in which settings a room carries (``musiconhold``
came in 2021, a draft page has no ``allowinvite``, K2s send no ``mute`` or ``prompt``), so
every setting the PBX leaves out, or sends in a shape this module cannot read, decodes to
``None`` ("not reported") and is named in the record's ``unreported``, instead of failing
the room. Only a room without a readable ``number`` (nothing to match it to), a ``name`` of
a non-text type, or an entry that is not an object cannot be decoded at all: it becomes an
:class:`UnreadableRoom`, an error at that room's place, and the other rooms still answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway import conference_codec as codec
from gateway.conference_codec import Prompt as Prompt  # re-exported: the record's prompt type
from gateway.errors import PbxProtocolError


@dataclass(frozen=True, slots=True)
class Conference:
    """One conference room's settings as the PBX reports them.

    ``None`` in a setting means the PBX did not report it (left out, or unreadable); for the
    PINs ``None`` also means "no PIN", and ``unreported`` tells the two apart.
    """

    number: str
    name: str
    participant_password: str | None
    moderator_password: str | None
    wait_for_moderator: bool | None
    allow_invite: bool | None
    moderators: tuple[str, ...] | None
    music_on_hold: bool | None
    mute: bool | None
    prompt: Prompt | None
    unreported: frozenset[str] = field(default=frozenset())
    """The record's field names the PBX left out or sent unreadable (see
    :data:`gateway.conference_codec.SETTINGS`)."""


@dataclass(frozen=True, slots=True)
class FieldNote:
    """One setting of one room the PBX did not report readably: for the log, never a value."""

    number: str
    wire_name: str
    absent: bool
    """True: the key was not there (or null); False: there, in a shape that cannot be read."""


@dataclass(frozen=True, slots=True)
class UnreadableRoom:
    """An entry of the PBX's answer that is no room this gateway can read, and why.

    Kept (and cached) in the room's place so the error lands at that room's path while the
    others are answered. ``number`` is None when the entry carries no readable one.
    """

    number: str | None
    reason: str
    endpoint: str

    def error(self) -> UnreadableRoomError:
        """The error a client sees at this room's path."""
        return UnreadableRoomError(self.reason, endpoint=self.endpoint)


class UnreadableRoomError(PbxProtocolError):
    """One room the PBX sent cannot be read: an error for that room only, not its list."""


Room = Conference | UnreadableRoom
"""What one entry of a ``conference/query`` answer decodes to."""


def decode_conference(
    raw: Mapping[str, Any], *, endpoint: str, notes: list[FieldNote] | None = None
) -> Conference:
    """Decode one ``ConferenceInfo``; PbxProtocolError only when it has no readable number
    or a name that is not text. Each setting not reported readably is added to ``notes``."""
    number = codec.text(raw.get("number"))
    if not number:
        raise PbxProtocolError(
            f"{endpoint} returned a conference without a number", endpoint=endpoint
        )
    name = raw.get("name")
    if name is not None and (isinstance(name, bool) or not isinstance(name, str | int | float)):
        raise PbxProtocolError(
            f"{endpoint} returned conference {number} with a name that is not text "
            f"({type(name).__name__})",
            endpoint=endpoint,
        )
    values: dict[str, Any] = {}
    unreported: list[str] = []
    for setting in codec.SETTINGS:
        wire_name, value = next(
            ((w, raw[w]) for w in setting.wire_names if raw.get(w) is not None),
            (setting.wire, None),
        )
        decoded = None if value is None else codec.read(setting, value)
        if decoded is None:
            unreported.append(setting.attribute)
            if notes is not None:
                notes.append(FieldNote(number, wire_name, absent=value is None))
        values[setting.attribute] = decoded
        if setting.kind is codec.Kind.PIN:
            values[setting.attribute] = decoded or None  # "" is "no PIN"
    return Conference(
        number=number, name=codec.text(name), unreported=frozenset(unreported), **values
    )


class QueryAnswer(dict[str, Room]):
    """A decoded ``conference/query`` answer: rooms keyed by number, and what it leaves open.

    ``order`` is every entry in the PBX's order (duplicates collapsed), numberless
    unreadable ones included, for an ``all`` listing. ``unproven`` holds the asked numbers
    the answer leaves out without proving them unknown: a short multi-number batch, a batch
    the PBX failed, or an answer holding a room without a number (it may be one of them).
    """

    def __init__(
        self,
        rooms: Mapping[str, Room] | None = None,
        *,
        order: tuple[Room, ...] | None = None,
        unproven: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(rooms or {})
        self.order: tuple[Room, ...] = tuple(self.values()) if order is None else order
        self.unproven = unproven


def in_order(answer: Mapping[str, Room]) -> list[Room]:
    """An answer's rooms in the PBX's order (a plain mapping: its own order)."""
    return list(answer.order if isinstance(answer, QueryAnswer) else answer.values())
