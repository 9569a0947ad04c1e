"""Room states as plain JSON for the fleet's bus, and read back strictly.

A :class:`~gateway.pbx.sessions_query.LiveSession` travels between replicas inside a sealed
message (:mod:`gateway.live.bus`), so only the fleet wrote it; it is still read strictly (a
replica of another version may send another shape): every field of the expected type or
the whole message is refused, never half applied.
"""

from __future__ import annotations

from typing import Any, Final, cast

from gateway.pbx.sessions_query import MEMBER_KINDS, LiveMember, LiveSession, MemberKind

_MEMBER_TEXT: Final = ("number", "from_number", "to_number", "trunk", "channelid", "memberstatus")


class Unreadable(ValueError):
    """A message part that is not a room state this gateway writes."""


def plain_session(session: LiveSession | None) -> dict[str, Any] | None:
    """``session`` as JSON-ready data (None stays None: nobody is in the room)."""
    if session is None:
        return None
    return {
        "number": session.number,
        "name": session.name,
        "callid": session.callid,
        "members": [
            {"kind": m.kind, **{f: getattr(m, f) for f in _MEMBER_TEXT}} for m in session.members
        ],
    }


def read_session(data: object) -> LiveSession | None:
    """The session :func:`plain_session` wrote; :class:`Unreadable` for anything else."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise Unreadable("a session that is not an object")
    number = data.get("number")
    if not isinstance(number, str) or not number.isdigit():
        raise Unreadable("a session without a room number")
    members = data.get("members")
    if not isinstance(members, list):
        raise Unreadable("a session without a member list")
    return LiveSession(
        number=number,
        name=_text(data, "name"),
        callid=_text(data, "callid"),
        members=tuple(_member(m) for m in members),
    )


def read_listing(data: object) -> dict[str, LiveSession]:
    """A listing (room number to session) as :func:`plain_listing` wrote it."""
    if not isinstance(data, dict):
        raise Unreadable("a listing that is not an object")
    listing: dict[str, LiveSession] = {}
    for number, plain in data.items():
        session = read_session(plain)
        if session is None or session.number != number:
            raise Unreadable("a listing entry under another room's number")
        listing[number] = session
    return listing


def plain_listing(listing: dict[str, LiveSession]) -> dict[str, Any]:
    return {number: plain_session(session) for number, session in listing.items()}


def read_rooms(data: object, *, limit: int) -> list[str] | None:
    """A list of room numbers (at most ``limit``), or None (every room)."""
    if data is None:
        return None
    if not isinstance(data, list) or len(data) > limit:
        raise Unreadable("rooms that are not a bounded list")
    if not all(isinstance(n, str) and n.isdigit() for n in data):
        raise Unreadable("a room number that is not digits")
    return cast(list[str], data)


def _member(data: object) -> LiveMember:
    if not isinstance(data, dict) or data.get("kind") not in MEMBER_KINDS:
        raise Unreadable("a member of no known kind")
    return LiveMember(
        kind=cast(MemberKind, data["kind"]),
        number=_text(data, "number"),
        from_number=_text(data, "from_number"),
        to_number=_text(data, "to_number"),
        trunk=_text(data, "trunk"),
        channelid=_text(data, "channelid"),
        memberstatus=_text(data, "memberstatus"),
    )


def _text(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise Unreadable(f"a {name} that is not text")
    return value
