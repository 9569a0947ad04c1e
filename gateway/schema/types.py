"""The GraphQL output types: a conference room and its join/leave prompt.

Every description is written for a person reading GraphiQL's docs pane who has never
seen the PBX manual.
"""

from __future__ import annotations

import enum
from typing import cast

import strawberry

from gateway.conference_codec import Prompt
from gateway.errors import ForbiddenError
from gateway.pbx.conferences import Conference
from gateway.schema.context import GatewayContext, gateway_context
from gateway.schema.live_types import ConferenceSessionNode
from gateway.security.identity import PINS


@strawberry.enum(description="What members hear when someone joins or leaves the conference.")
class ConferencePrompt(enum.Enum):
    DEFAULT = strawberry.enum_value(
        "default", description="A beep tone when someone joins or leaves."
    )
    EXTEN = strawberry.enum_value(
        "exten", description="The caller's number is announced when they join or leave."
    )
    NONE = strawberry.enum_value("none", description="Nothing is played.")

    @classmethod
    def from_record(cls, prompt: Prompt | None) -> ConferencePrompt | None:
        """The schema's value for the PBX's prompt (the names match one to one)."""
        return None if prompt is None else cls[prompt.name]


def _participant_password(root: strawberry.Parent[Conference], info: strawberry.Info) -> str | None:
    return _pin(info, root.participant_password)


def _moderator_password(root: strawberry.Parent[Conference], info: strawberry.Info) -> str | None:
    return _pin(info, root.moderator_password)


def _has_participant_password(root: strawberry.Parent[Conference]) -> bool | None:
    if "participant_password" in root.unreported:
        return None  # the PBX did not say: "no PIN" would be a guess
    return root.participant_password is not None


def _has_moderator_password(root: strawberry.Parent[Conference]) -> bool | None:
    if "moderator_password" in root.unreported:
        return None
    return root.moderator_password is not None


def _prompt(root: strawberry.Parent[Conference]) -> ConferencePrompt | None:
    return ConferencePrompt.from_record(root.prompt)


async def _session(
    root: strawberry.Parent[Conference], info: strawberry.Info[GatewayContext, None]
) -> ConferenceSessionNode | None:
    context = info.context
    context.live_read = True  # no cache may keep this answer past the seconds it is true
    found = await context.sessions.load(root.number)
    return None if found is None else ConferenceSessionNode.of(found, context.live)


def _pin(info: strawberry.Info, pin: str | None) -> str | None:
    """A PIN, for callers holding ``conferences:pins``; FORBIDDEN on this path otherwise."""
    context = gateway_context(info.context)
    if context is None or not context.identity.has(PINS):
        raise ForbiddenError(
            f"the caller lacks the {PINS} scope needed to read PINs; "
            "hasParticipantPassword and hasModeratorPassword tell whether a PIN is set"
        )
    return pin


_UNREPORTED = (
    " null when the PBX does not report it (left out, or in a shape the gateway cannot read)."
)


@strawberry.type(
    name="Conference",
    description=(
        "A conference room on the PBX and its settings. Rooms are created in the PBX's web "
        "interface; this API reads their settings and changes them."
    ),
)
class ConferenceNode:
    """The GraphQL view of a decoded PBX record.

    Never instantiated: resolvers return the store's :class:`Conference` records as they
    are, and these fields read them (plain fields by attribute name, the rest through the
    small resolvers above). No per-request copy of a room is made, which matters when a
    list holds thousands.
    """

    number: str = strawberry.field(
        description='The room\'s number: the extension callers dial to join it, e.g. "6400".'
    )
    name: str = strawberry.field(description="The room's display name.")
    participant_password: str | None = strawberry.field(
        resolver=_participant_password,
        description=(
            "The PIN members enter to join; null when the room has none or the PBX does not "
            "report it (hasParticipantPassword tells which). Needs the conferences:pins scope."
        ),
    )
    moderator_password: str | None = strawberry.field(
        resolver=_moderator_password,
        description=(
            "The PIN that makes a caller a moderator; null when the room has none or the PBX "
            "does not report it (hasModeratorPassword tells which). Needs the conferences:pins "
            "scope."
        ),
    )
    has_participant_password: bool | None = strawberry.field(
        resolver=_has_participant_password,
        description=(
            "Whether members need a PIN to join (no special scope needed); null when the PBX "
            "does not report the room's PIN."
        ),
    )
    has_moderator_password: bool | None = strawberry.field(
        resolver=_has_moderator_password,
        description=(
            "Whether the room has a moderator PIN (no special scope needed); null when the PBX "
            "does not report it."
        ),
    )
    wait_for_moderator: bool | None = strawberry.field(
        description=(
            "Whether members wait (with music or silence) until a moderator joins;" + _UNREPORTED
        )
    )
    allow_invite: bool | None = strawberry.field(
        description=(
            "Whether members may invite others into the conference from their phone;"
            + _UNREPORTED
            + " A draft S-Series v2 API leaves it out."
        )
    )
    moderators: list[str] | None = strawberry.field(
        description=(
            "Extension numbers that are always moderators of this room; may be empty;" + _UNREPORTED
        )
    )
    music_on_hold: bool | None = strawberry.field(
        description=(
            "Whether a member alone in the room, or waiting for a moderator, hears music;"
            + _UNREPORTED
            + " API builds before 2021 leave it out."
        )
    )
    mute: bool | None = strawberry.field(
        description=(
            "Whether everyone but moderators is muted on entry;"
            + _UNREPORTED
            + " K2 models and API builds before 2021 leave it out."
        )
    )
    prompt: ConferencePrompt | None = strawberry.field(
        resolver=_prompt,
        description=(
            "What members hear when someone joins or leaves;"
            + _UNREPORTED
            + " K2 models and API builds before 2021 leave it out."
        ),
    )

    session: ConferenceSessionNode | None = strawberry.field(
        resolver=_session,
        description=(
            "Who is in the room right now; null when nobody is. Read from the PBX's live "
            "view and kept only a few seconds (GATEWAY_SESSION_TTL); an answer holding it is "
            "never cached. FEATURE_UNAVAILABLE at this path when the PBX's firmware cannot "
            "tell (the rest of the room is still answered)."
        ),
    )

    @staticmethod
    def of(conference: Conference) -> ConferenceNode:
        """``conference`` typed as the GraphQL type that reads it (no copy is made)."""
        return cast(ConferenceNode, conference)
