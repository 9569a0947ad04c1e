"""``conference/query``: numbers in, decoded rooms out, whatever the PBX's quirks.

Entries are matched to the request by ``number``, never by position. What the PBX answers
for an unknown number is not documented (``pbx-api.md``): it may leave it out, send no or an
empty ``conferences``, or fail the whole batch with some errno (10110 on S-Series v2). So an
answer proves a number unknown only when it cannot mean anything else:

- a single-number answer without it, or an ``all`` listing without it;
- never a multi-number batch that came back short (``empty`` or ``missing`` would drop
  the known rooms too), nor a batch the PBX failed on a non-token errno.

What an answer leaves open is returned in :attr:`QueryAnswer.unproven`; the store settles it
against its shared, cached ``all`` listing (``gateway.store``), so this module never calls
``all`` on its own.

Rooms are decoded tolerantly (:mod:`gateway.pbx.conferences`); an entry that cannot be read
at all is an :class:`UnreadableRoom` in its place, and what was not reported is logged
through :class:`~gateway.pbx.field_notes.FieldNotes`, once per room and field per TTL.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final, Literal

from gateway.conference_codec import ALL
from gateway.errors import PbxApiError, PbxProtocolError, PbxTokenError, PbxTransientError
from gateway.pbx.conferences import (
    Conference,
    FieldNote,
    QueryAnswer,
    Room,
    UnreadableRoom,
    decode_conference,
)
from gateway.pbx.field_notes import FieldNotes
from gateway.pbx.session import PbxSession

ENDPOINT: Final = "conference/query"

logger = logging.getLogger(__name__)


async def query_conferences(
    session: PbxSession,
    numbers: Sequence[str] | Literal["all"],
    *,
    notes: FieldNotes | None = None,
) -> QueryAnswer:
    """The rooms the PBX reports among ``numbers`` (or all), keyed by number.

    Numbers must already be validated (digits only): this function trusts its caller,
    because a comma or ``all`` inside one would widen the query.
    """
    if numbers == ALL:
        return await _query(session, ALL, notes)
    wanted = list(dict.fromkeys(numbers))
    if not wanted:
        return QueryAnswer()
    try:
        answer = await _query(session, ",".join(wanted), notes)
    except PbxApiError as exc:
        if exc.endpoint != ENDPOINT or isinstance(exc, PbxTokenError | PbxTransientError):
            raise  # not about the numbers (a login, the token, a struggling PBX)
        logger.info(
            "conference/query for %d number(s) failed with errno %s; the numbers are checked "
            "against the list of all rooms instead",
            len(wanted),
            exc.errno,
        )
        return QueryAnswer(unproven=frozenset(wanted))
    found = {number: answer[number] for number in wanted if number in answer}
    left_out = frozenset(wanted) - found.keys()
    numberless = any(
        isinstance(room, UnreadableRoom) and room.number is None for room in answer.order
    )
    proves_absence = len(wanted) == 1 and not numberless
    return QueryAnswer(
        found,
        order=tuple(found.values()),
        unproven=frozenset() if proves_absence else left_out,
    )


async def _query(session: PbxSession, number_field: str, notes: FieldNotes | None) -> QueryAnswer:
    payload = await session.call(ENDPOINT, {"number": number_field}, idempotent=True)
    entries = payload.get("conferences", [])
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise PbxProtocolError(
            f"{ENDPOINT} answered a 'conferences' that is not a list", endpoint=ENDPOINT
        )
    rooms: dict[str, Room] = {}
    order: list[Room] = []
    field_notes: list[FieldNote] = []
    for position, entry in enumerate(entries):
        room = _decode(entry, position, field_notes)
        if isinstance(room, UnreadableRoom) and notes is not None:
            notes.unreadable(room)
        if room.number is None:
            order.append(room)
        elif room.number in rooms:  # a duplicate: the later entry wins, in the first's place
            order[order.index(rooms[room.number])] = room
            rooms[room.number] = room
        else:
            rooms[room.number] = room
            order.append(room)
    if notes is not None:
        notes.log(ENDPOINT, field_notes)
    return QueryAnswer(rooms, order=tuple(order))


def _decode(entry: object, position: int, field_notes: list[FieldNote]) -> Room:
    """One entry as a room, or as an :class:`UnreadableRoom` saying why it is not one."""
    if not isinstance(entry, dict):
        return UnreadableRoom(
            None,
            f"{ENDPOINT} answered entry {position} as a {type(entry).__name__}, not a room",
            ENDPOINT,
        )
    notes: list[FieldNote] = []
    try:
        conference: Conference = decode_conference(entry, endpoint=ENDPOINT, notes=notes)
    except PbxProtocolError as exc:
        number = _number_of(entry)
        where = f"room {number}" if number else f"entry {position}"
        return UnreadableRoom(number, f"{where} cannot be read: {exc.message}", ENDPOINT)
    field_notes.extend(notes)
    return conference


def _number_of(entry: dict[str, object]) -> str | None:
    value = entry.get("number")
    if isinstance(value, str) and value.strip().isdigit():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None
