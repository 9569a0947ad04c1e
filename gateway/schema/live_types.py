"""The GraphQL view of a room in session: who is in it now (``Conference.session``).

Built per request from the PBX's ``query_in_session`` answer (a few members per room, so
a copy is cheap). The PBX's channel id never leaves the gateway: each participant shows an
opaque id derived from it (:meth:`gateway.session_cache.SessionCache.participant_id`).
"""

from __future__ import annotations

import enum

import strawberry

from gateway.pbx.sessions_query import LiveMember, LiveSession
from gateway.session_cache import SessionCache


@strawberry.enum(description="How a participant is connected to the conference.")
class ParticipantKind(enum.Enum):
    EXTENSION = strawberry.enum_value("ext", description="A phone on this PBX (an extension).")
    INBOUND = strawberry.enum_value(
        "inbound", description="An outside caller who dialled in through a trunk."
    )
    OUTBOUND = strawberry.enum_value(
        "outbound", description="An outside number the conference called out to through a trunk."
    )


@strawberry.enum(description="Where a participant stands in the conference, as the PBX says.")
class ParticipantStatus(enum.Enum):
    INVITED = strawberry.enum_value(
        "ANSWER",
        description=(
            "In the conference after accepting an invitation: the conference called them "
            "(the PBX's ANSWER)."
        ),
    )
    JOINED = strawberry.enum_value(
        "ANSWERED", description="In the conference after dialling in themselves (ANSWERED)."
    )
    WAITING_FOR_MODERATOR = strawberry.enum_value(
        "HOLD",
        description=(
            "Connected but waiting for a moderator: the room waits for one and none is in "
            "it yet (HOLD)."
        ),
    )


# The PBX's memberstatus -> the schema's status (pbx-api.md "Live conferences").
_STATUSES: dict[str, ParticipantStatus] = {
    "ANSWER": ParticipantStatus.INVITED,
    "ANSWERED": ParticipantStatus.JOINED,
    "HOLD": ParticipantStatus.WAITING_FOR_MODERATOR,
}
_AS_GIVEN = " as the PBX gives it; null when it does not report it."


@strawberry.type(name="Participant", description="Someone in a conference right now.")
class ParticipantNode:
    id: strawberry.ID = strawberry.field(
        description=(
            "An opaque id, stable while this participant stays in the room (a new call gets "
            "a new id). It means nothing outside this gateway process."
        )
    )
    kind: ParticipantKind = strawberry.field(description="How they are connected.")
    number: str | None = strawberry.field(
        description=(
            "The number that tells who this is: the extension's number, the outside caller's "
            "number (INBOUND), or the outside number called (OUTBOUND);" + _AS_GIVEN
        )
    )
    from_number: str | None = strawberry.field(
        description=(
            "INBOUND and OUTBOUND: the calling side (the outside caller, or the PBX's side "
            "for a call the conference made);" + _AS_GIVEN + " Null for extensions."
        )
    )
    to_number: str | None = strawberry.field(
        description=(
            "INBOUND and OUTBOUND: the number called (the number the caller dialled, or the "
            "outside number);" + _AS_GIVEN + " Null for extensions."
        )
    )
    trunk_name: str | None = strawberry.field(
        description=(
            "INBOUND and OUTBOUND: the trunk the call uses;" + _AS_GIVEN + " Null for extensions."
        )
    )
    status: ParticipantStatus | None = strawberry.field(
        description=(
            "How they came in, or that they wait for a moderator; null when the PBX does not "
            "report it or reports a status this API does not know."
        )
    )

    @classmethod
    def of(cls, room: str, member: LiveMember, ids: SessionCache) -> ParticipantNode:
        """The schema's view of one member of ``room``."""
        if member.kind == "ext":
            number = member.number
        elif member.kind == "inbound":
            number = member.from_number
        else:
            number = member.to_number
        return cls(
            id=strawberry.ID(ids.participant_id(room, member)),
            kind=ParticipantKind(member.kind),
            number=number,
            from_number=member.from_number,
            to_number=member.to_number,
            trunk_name=member.trunk,
            status=_STATUSES.get(member.memberstatus or ""),
        )


@strawberry.type(
    name="ConferenceSession",
    description="A conference in progress: who is in the room now (refreshed every few seconds).",
)
class ConferenceSessionNode:
    participants: list[ParticipantNode] = strawberry.field(
        description=(
            "Everyone in the room, in the order the PBX lists them (usually the order they "
            "came in). A participant the PBX reports in a shape the gateway cannot read is "
            "left out (and logged)."
        )
    )

    @classmethod
    def of(cls, session: LiveSession, ids: SessionCache) -> ConferenceSessionNode:
        """The schema's view of a room's session."""
        return cls(
            participants=[ParticipantNode.of(session.number, m, ids) for m in session.members]
        )
