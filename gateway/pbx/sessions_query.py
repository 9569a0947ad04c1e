"""``conference/query_in_session``: who is in which room right now, read tolerantly.

pbx-api.md "Live conferences": ``number`` is one number, a comma list or ``all``; the answer
lists each running conference under the key ``conference`` (singular, as the S-Series v2
page documents it) with ``callid``, ``conferencenumber``, ``conferencename`` and
``members[]``. A member is one of ``{"ext": {...}}``, ``{"inbound": {...}}`` or
``{"outbound": {...}}``: an extension has a ``number``; an outside caller has ``from``,
``to`` and ``trunkname``; each has a ``channelid`` and a ``memberstatus`` (``ANSWER``
joined by accepting an invitation, ``ANSWERED`` dialled in, ``HOLD`` waiting for the
moderator).

Read tolerantly: a field left out (or not text) is None; a member that cannot be read at
all (not an object, no known kind) is skipped and logged once per room and reason (per
``note_ttl``); a conference without a readable number is skipped the same way. Errnos:

- 10110 ("the conference number does not exist"): the rooms asked are not in session, so
  none is (S-Series v2 answers it for an idle room: pbx-api.md). For a comma list it
  cannot say which: the caller asks ``all`` instead, which proves each room either way;
- 10003 (unsupported API request): this firmware lacks the endpoint;
  :class:`~gateway.errors.PbxFeatureUnavailableError`, pointing to ``pbx-gateway doctor``.

The ``channelid`` is kept here (the gateway needs it to tell members apart and, later, to
act on them); the schema shows only an opaque id derived from it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, cast

from cachetools import TTLCache

from gateway.conference_codec import ALL
from gateway.errors import PbxApiError, PbxFeatureUnavailableError
from gateway.pbx.errnos import NO_SUCH_CONFERENCE
from gateway.pbx.session import PbxSession

ENDPOINT: Final = "conference/query_in_session"
LIST_KEY: Final = "conference"
UNSUPPORTED_REQUEST: Final = "10003"
MEMBER_KINDS: Final = ("ext", "inbound", "outbound")

MemberKind = Literal["ext", "inbound", "outbound"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LiveMember:
    """One participant as the PBX reports it; any field it leaves out is None."""

    kind: MemberKind
    number: str | None
    """An extension's number (``ext`` only)."""
    from_number: str | None
    """Who called (``inbound``: the outside caller; ``outbound``: the room's side)."""
    to_number: str | None
    """The number called (``inbound``: the number dialled; ``outbound``: the outside one)."""
    trunk: str | None
    channelid: str | None
    memberstatus: str | None


@dataclass(frozen=True, slots=True)
class LiveSession:
    """A room in session: its call and its readable members, in the PBX's order."""

    number: str
    name: str | None
    callid: str | None
    members: tuple[LiveMember, ...]


class MemberNotes:
    """Logs an unreadable member or conference once per (room, reason) per ``ttl``."""

    def __init__(self, ttl: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._seen: TTLCache[tuple[str, str], bool] = TTLCache(10_000, max(ttl, 1.0), timer=clock)

    def skipped(self, room: str, reason: str) -> None:
        """Log that something in ``room`` was skipped, unless already logged within the TTL."""
        key = (room, reason)
        if key in self._seen:
            return
        self._seen[key] = True
        # Only shapes and positions are logged, never values (a number is personal data).
        logger.warning("%s: %s in room %s; skipped", ENDPOINT, reason, room)


async def query_in_session(
    session: PbxSession,
    numbers: Sequence[str] | Literal["all"],
    *,
    notes: MemberNotes | None = None,
) -> dict[str, LiveSession]:
    """The rooms in session among ``numbers`` (or all), keyed by room number.

    Numbers must already be validated (digits only). A room missing from the answer is not
    in session. A comma list the PBX failed with 10110 is asked again as ``all``.
    """
    if numbers != ALL:
        wanted = list(dict.fromkeys(numbers))
        if not wanted:
            return {}
        try:
            found = await _query(session, ",".join(wanted), notes)
        except _NotInSession:
            if len(wanted) == 1:
                return {}
            # Which of them is idle the errno does not say: the full list proves each.
            found = await _all(session, notes)
        return {number: found[number] for number in wanted if number in found}
    return await _all(session, notes)


class _NotInSession(Exception):
    """The PBX answered 10110 for the numbers asked."""


async def _all(session: PbxSession, notes: MemberNotes | None) -> dict[str, LiveSession]:
    try:
        return await _query(session, ALL, notes)
    except _NotInSession:  # some firmware may answer 10110 when no room is in session
        return {}


async def _query(
    session: PbxSession, number_field: str, notes: MemberNotes | None
) -> dict[str, LiveSession]:
    try:
        payload = await session.call(ENDPOINT, {"number": number_field}, idempotent=True)
    except PbxApiError as exc:
        if exc.endpoint != ENDPOINT:
            raise
        if exc.errno == NO_SUCH_CONFERENCE:
            raise _NotInSession from exc
        if exc.errno == UNSUPPORTED_REQUEST:
            raise PbxFeatureUnavailableError(
                "this PBX's firmware does not answer conference/query_in_session (errno "
                "10003), so who is in a room cannot be shown; run `pbx-gateway doctor` to "
                "see which live-conference endpoints the device supports",
                endpoint=ENDPOINT,
                errno=exc.errno,
                meaning=exc.meaning,
            ) from exc
        raise
    return decode_listing(payload.get(LIST_KEY), notes)


def decode_listing(entries: object, notes: MemberNotes | None = None) -> dict[str, LiveSession]:
    """The answer's ``conference`` list as sessions keyed by room number, read tolerantly."""
    if not isinstance(entries, list):
        # Left out, null or the wrong shape: nothing readable is in session (chosen: a
        # tolerant reader; an answer that is not the PBX's at all was refused by the client).
        if entries is not None and notes is not None:
            notes.skipped("(all)", f"a {LIST_KEY!r} that is not a list")
        return {}
    rooms: dict[str, LiveSession] = {}
    for position, entry in enumerate(entries):
        room = _decode_session(entry, position, notes)
        if room is not None:
            rooms[room.number] = room  # a duplicate: the later entry wins
    return rooms


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def decode_session(entry: object, notes: MemberNotes | None = None) -> LiveSession | None:
    """One conference entry (of a listing, or a ``ConferenceStatus`` event, which has the
    same fields) read tolerantly; None when it has no readable room number."""
    return _decode_session(entry, 0, notes)


def _decode_session(entry: object, position: int, notes: MemberNotes | None) -> LiveSession | None:
    number = _text(entry.get("conferencenumber")) if isinstance(entry, dict) else None
    if not isinstance(entry, dict) or number is None or not number.isdigit():
        if notes is not None:
            notes.skipped(f"entry {position}", "a conference without a readable number")
        return None
    raw_members = entry.get("members")
    members: list[LiveMember] = []
    for index, raw in enumerate(raw_members if isinstance(raw_members, list) else []):
        member = _decode_member(raw)
        if member is None:
            if notes is not None:
                notes.skipped(number, f"member {index} cannot be read")
            continue
        members.append(member)
    return LiveSession(
        number=number,
        name=_text(entry.get("conferencename")),
        callid=_text(entry.get("callid")),
        members=tuple(members),
    )


def _decode_member(raw: object) -> LiveMember | None:
    """``{"ext": {...}}`` (or inbound/outbound) as a member; None when it is none of them."""
    if not isinstance(raw, dict):
        return None
    kinds = [kind for kind in MEMBER_KINDS if isinstance(raw.get(kind), dict)]
    if len(kinds) != 1:
        return None
    kind = cast(MemberKind, kinds[0])
    info: dict[str, object] = raw[kind]
    return LiveMember(
        kind=kind,
        number=_text(info.get("number")),
        from_number=_text(info.get("from")),
        to_number=_text(info.get("to")),
        trunk=_text(info.get("trunkname")),
        channelid=_text(info.get("channelid")),
        memberstatus=_text(info.get("memberstatus")),
    )
