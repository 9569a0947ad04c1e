"""Conference records: the PBX's wire format decoded into a typed, immutable record.

The wire format (``pbx-api.md``, Query conferences) is all strings, with quirks this
module absorbs so nothing above it has to: ``moderators`` as ``""``, ``"4000"``,
``"4000,4001"`` or a bare JSON number; ``mute`` and ``prompt`` absent on K2 models;
unknown extra keys; the API's own spelling ``participantepassword``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.errors import PbxProtocolError

_YES: Final = frozenset({"yes", "true", "1", "on"})
_NO: Final = frozenset({"no", "false", "0", "off"})


class Prompt(enum.Enum):
    """What members hear when someone joins or leaves."""

    DEFAULT = "default"
    EXTEN = "exten"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Conference:
    """One conference room's settings as the PBX reports them."""

    number: str
    name: str
    participant_password: str | None
    moderator_password: str | None
    wait_for_moderator: bool
    allow_invite: bool
    moderators: tuple[str, ...]
    music_on_hold: bool
    mute: bool | None
    prompt: Prompt | None


def decode_conference(raw: Mapping[str, Any], *, endpoint: str) -> Conference:
    """Decode one ``ConferenceInfo``; raise PbxProtocolError naming the field it cannot read."""
    number = _text(raw.get("number"))
    if not number:
        raise PbxProtocolError(
            f"{endpoint} returned a conference without a number", endpoint=endpoint
        )

    def flag(field: str) -> bool:
        value = _flag(raw.get(field))
        if value is None:
            raise PbxProtocolError(
                f"{endpoint} returned conference {number} with an unreadable {field!r}",
                endpoint=endpoint,
            )
        return value

    return Conference(
        number=number,
        name=_text(raw.get("name")),
        participant_password=_text(raw.get("participantepassword")) or None,
        moderator_password=_text(raw.get("moderatorpassword")) or None,
        wait_for_moderator=flag("waitformoderator"),
        allow_invite=flag("allowinvite"),
        moderators=_moderators(raw.get("moderators")),
        music_on_hold=flag("musiconhold"),
        mute=None if raw.get("mute") is None else flag("mute"),
        prompt=_prompt(raw.get("prompt")),
    )


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _flag(value: object) -> bool | None:
    text = _text(value).lower()
    if text in _YES:
        return True
    if text in _NO:
        return False
    return None


def _moderators(value: object) -> tuple[str, ...]:
    """``""`` / ``"4000"`` / ``"4000,4001"`` / ``4000`` / a list, as extension numbers."""
    parts = [_text(item) for item in value] if isinstance(value, list) else _text(value).split(",")
    return tuple(part.strip() for part in parts if part.strip())


def _prompt(value: object) -> Prompt | None:
    # An unexpected value is reported as "not reported" rather than failing the room.
    try:
        return Prompt(_text(value).lower())
    except ValueError:
        return None
