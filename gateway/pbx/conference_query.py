"""``conference/query``: numbers in, decoded conferences out, whatever the PBX's quirks.

Entries are matched to the request by ``number``, never by position; a requested number
the answer leaves out is "not found". What the PBX answers for an unknown number is not
documented (``pbx-api.md``): it may leave it out, send no or an empty ``conferences``,
or fail the whole batch with some errno. In the last case one fallback to ``"all"``,
filtered, tells the known numbers from the unknown ones.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Final, Literal

from gateway.errors import PbxApiError, PbxProtocolError, PbxTokenError, PbxTransientError
from gateway.pbx.conferences import Conference, decode_conference
from gateway.pbx.session import PbxSession

ENDPOINT: Final = "conference/query"
ALL: Final = "all"

logger = logging.getLogger(__name__)


async def query_conferences(
    session: PbxSession, numbers: Sequence[str] | Literal["all"]
) -> dict[str, Conference]:
    """The conferences the PBX knows among ``numbers`` (or all), keyed by number.

    Numbers must already be validated (digits only): this function trusts its caller,
    because a comma or ``all`` inside one would widen the query.
    """
    if numbers == ALL:
        return await _query(session, ALL)
    wanted = list(dict.fromkeys(numbers))
    if not wanted:
        return {}
    try:
        found = await _query(session, ",".join(wanted))
    except PbxApiError as exc:
        if exc.endpoint != ENDPOINT or isinstance(exc, PbxTokenError | PbxTransientError):
            raise  # not about the numbers (a login, the token, a struggling PBX)
        logger.info(
            "conference/query for %d numbers failed with errno %s; asking for all instead",
            len(wanted),
            exc.errno,
        )
        found = await _query(session, ALL)
    return _only(found, wanted)


async def _query(session: PbxSession, number_field: str) -> dict[str, Conference]:
    payload = await session.call(ENDPOINT, {"number": number_field}, idempotent=True)
    entries = payload.get("conferences", [])
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise PbxProtocolError(
            f"{ENDPOINT} answered a 'conferences' that is not a list", endpoint=ENDPOINT
        )
    found: dict[str, Conference] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise PbxProtocolError(
                f"{ENDPOINT} answered a conference that is not an object", endpoint=ENDPOINT
            )
        conference = decode_conference(entry, endpoint=ENDPOINT)
        found[conference.number] = conference
    return found


def _only(found: dict[str, Conference], wanted: Collection[str]) -> dict[str, Conference]:
    return {number: found[number] for number in wanted if number in found}
