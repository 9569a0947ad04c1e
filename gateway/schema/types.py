"""The GraphQL output types: a conference room and its join/leave prompt.

Every description is written for a person reading GraphiQL's docs pane who has never
seen the PBX manual.
"""

from __future__ import annotations

import enum

import strawberry

from gateway.pbx.conferences import Conference, Prompt
from gateway.schema.permissions import CanReadPins


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


@strawberry.type(
    name="Conference",
    description=(
        "A conference room on the PBX and its settings. Rooms are created in the PBX's web "
        "interface; this API reads their settings and changes them."
    ),
)
class ConferenceNode:
    number: str = strawberry.field(
        description='The room\'s number: the extension callers dial to join it, e.g. "6400".'
    )
    name: str = strawberry.field(description="The room's display name.")
    participant_password: str | None = strawberry.field(
        permission_classes=[CanReadPins],
        description=(
            "The PIN members enter to join; null when the room has none. Needs the "
            "conferences:pins scope."
        ),
    )
    moderator_password: str | None = strawberry.field(
        permission_classes=[CanReadPins],
        description=(
            "The PIN that makes a caller a moderator; null when the room has none. Needs the "
            "conferences:pins scope."
        ),
    )
    has_participant_password: bool = strawberry.field(
        description="Whether members need a PIN to join (no special scope needed)."
    )
    has_moderator_password: bool = strawberry.field(
        description="Whether the room has a moderator PIN (no special scope needed)."
    )
    wait_for_moderator: bool = strawberry.field(
        description="Whether members wait (with music or silence) until a moderator joins."
    )
    allow_invite: bool = strawberry.field(
        description="Whether members may invite others into the conference from their phone."
    )
    moderators: list[str] = strawberry.field(
        description="Extension numbers that are always moderators of this room; may be empty."
    )
    music_on_hold: bool = strawberry.field(
        description="Whether a member alone in the room, or waiting for a moderator, hears music."
    )
    mute: bool | None = strawberry.field(
        description=(
            "Whether everyone but moderators is muted on entry; null on PBX models that do not "
            "report it."
        )
    )
    prompt: ConferencePrompt | None = strawberry.field(
        description=(
            "What members hear when someone joins or leaves; null on PBX models that do not "
            "report it."
        )
    )

    @classmethod
    def from_record(cls, conference: Conference) -> ConferenceNode:
        """The GraphQL view of a decoded PBX record."""
        return cls(
            number=conference.number,
            name=conference.name,
            participant_password=conference.participant_password,
            moderator_password=conference.moderator_password,
            has_participant_password=conference.participant_password is not None,
            has_moderator_password=conference.moderator_password is not None,
            wait_for_moderator=conference.wait_for_moderator,
            allow_invite=conference.allow_invite,
            moderators=list(conference.moderators),
            music_on_hold=conference.music_on_hold,
            mute=conference.mute,
            prompt=ConferencePrompt.from_record(conference.prompt),
        )
