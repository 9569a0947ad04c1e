"""The moderator controls: mute, unmute, remove and invite participants of a running room.

In order, and nothing reaches the PBX before the last two steps (as ``updateConference``):

1. the ``conferences:moderate`` scope (``FORBIDDEN``; a permission class, so the resolver
   never runs);
2. the input's rules (``BAD_USER_INPUT``, every violation at once:
   :mod:`gateway.schema.moderation_input`);
3. the caller's budget of PBX calls, charged one;
4. one call to the PBX (:mod:`gateway.pbx.member_controls`), never resent blindly.

The PBX enforces who may act: the ``operator`` must be in the room as a moderator. Each
attempt leaves one ``gateway.audit`` line (client, room, action, operator, members,
outcome). The answer is the action as the PBX took it; these controls change no room
setting, so the conference cache has nothing to drop. Who is in the room may have changed:
the session cache forgets its listing, and when somebody subscribes to the room the live
feed reads it once more (one ``query_in_session``) and sends them what changed, without
waiting for the PBX's event.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import Annotated, Any

import strawberry

from gateway.errors import GatewayError, InvalidFieldsError, PbxUnavailableError
from gateway.observability.audit import audit_moderation
from gateway.pbx.member_controls import (
    ENDPOINTS,
    ControlAction,
    MemberAction,
    apply_action,
    may_have_acted,
)
from gateway.schema.context import GatewayContext, gateway_context
from gateway.schema.moderation_input import (
    ConferenceParticipantsInput,
    InviteParticipantsInput,
    validate_invite,
    validate_participants,
)
from gateway.schema.permissions import RequireScope
from gateway.security.identity import MODERATE

Info = strawberry.Info[GatewayContext, None]


def audit_action(action: ControlAction) -> str:
    """The audit trail's name for ``action`` (``conference.mute`` and so on)."""
    return f"conference.{action.value}"


_ACTIONS_BY_FIELD = {
    "muteParticipants": ControlAction.MUTE,
    "unmuteParticipants": ControlAction.UNMUTE,
    "removeParticipants": ControlAction.REMOVE,
    "inviteParticipants": ControlAction.INVITE,
}


Input = ConferenceParticipantsInput | InviteParticipantsInput
Validator = Callable[[ControlAction, Any], MemberAction]


def _audited_members(data: object) -> list[str]:
    """The members as given (``["all"]`` for everyone), for the audit line."""
    if isinstance(data, ConferenceParticipantsInput) and data.all:
        return ["all"]
    if isinstance(data, ConferenceParticipantsInput | InviteParticipantsInput):
        return list(data.members or [])
    return []


class CanModerate(RequireScope):
    scope = MODERATE
    message = (
        f"the caller lacks the {MODERATE} scope needed to mute, unmute, remove or invite "
        "conference participants"
    )

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        allowed = super().has_permission(source, info, **kwargs)
        if not allowed:
            data = kwargs.get("input")
            given = (
                data
                if isinstance(data, ConferenceParticipantsInput | InviteParticipantsInput)
                else None
            )
            context = gateway_context(info.context)
            action = _ACTIONS_BY_FIELD.get(info.field_name, ControlAction.MUTE)
            audit_moderation(
                audit_action(action),
                identity=context.identity if context is not None else None,
                number=given.number if given is not None else "",
                operator=given.operator if given is not None else "",
                members=_audited_members(data),
                outcome="denied",
                request_id=context.request_id if context is not None else None,
            )
        return allowed


@strawberry.enum(description="What a moderator did to a conference's participants.")
class ModeratorAction(enum.Enum):
    MUTE = strawberry.enum_value(
        "mute", description="Muted: they still hear the room; the room no longer hears them."
    )
    UNMUTE = strawberry.enum_value("unmute", description="Unmuted: the room hears them again.")
    REMOVE = strawberry.enum_value("remove", description="Removed: their call was ended.")
    INVITE = strawberry.enum_value("invite", description="Invited: the PBX is calling them in.")


@strawberry.type(description="The outcome of a moderator's action: what the PBX accepted.")
class ModeratorActionPayload:
    number: str = strawberry.field(description="The room acted on.")
    action: ModeratorAction = strawberry.field(description="What was done.")
    operator: str = strawberry.field(description="The moderator extension that acted.")
    members: list[str] = strawberry.field(
        description="The participants' numbers acted on, as given; [] when `all` is true."
    )
    all: bool = strawberry.field(
        description="Whether the action was on everyone in the room but the operator."
    )


ParticipantsArgument = Annotated[
    ConferenceParticipantsInput,
    strawberry.argument(description="The room, the moderator acting, and whom to act on."),
]
InviteArgument = Annotated[
    InviteParticipantsInput,
    strawberry.argument(description="The room, the moderator inviting, and whom to call."),
]

_ONCE = (
    "Sent to the PBX once and never retried by the gateway: after a PBX_UNAVAILABLE error "
    "without an errno it may or may not have been done. FEATURE_UNAVAILABLE: this PBX's "
    "firmware lacks the control (see pbx-gateway doctor)."
)
_NEEDS = (
    "Needs the conferences:moderate scope; `operator` must be in the room as a moderator "
    "(the PBX refuses otherwise, errno 10006)."
)


@strawberry.type(description="Act on the participants of a running conference.")
class ModeratorMutations:
    @strawberry.mutation(
        permission_classes=[CanModerate],
        description=f"Mute participants of a running conference. {_NEEDS} {_ONCE}",
    )
    async def mute_participants(
        self, info: Info, input: ParticipantsArgument
    ) -> ModeratorActionPayload:
        return await _act(info, ControlAction.MUTE, input, validate_participants)

    @strawberry.mutation(
        permission_classes=[CanModerate],
        description=f"Unmute participants of a running conference. {_NEEDS} {_ONCE}",
    )
    async def unmute_participants(
        self, info: Info, input: ParticipantsArgument
    ) -> ModeratorActionPayload:
        return await _act(info, ControlAction.UNMUTE, input, validate_participants)

    @strawberry.mutation(
        permission_classes=[CanModerate],
        description=(
            f"Remove participants from a running conference (their calls end). {_NEEDS} {_ONCE}"
        ),
    )
    async def remove_participants(
        self, info: Info, input: ParticipantsArgument
    ) -> ModeratorActionPayload:
        return await _act(info, ControlAction.REMOVE, input, validate_participants)

    @strawberry.mutation(
        permission_classes=[CanModerate],
        description=(
            "Call numbers into a running conference; each joins when they pick up. "
            f"{_NEEDS} {_ONCE}"
        ),
    )
    async def invite_participants(
        self, info: Info, input: InviteArgument
    ) -> ModeratorActionPayload:
        return await _act(info, ControlAction.INVITE, input, lambda _, data: validate_invite(data))


def _tell_subscribers(context: GatewayContext, number: str) -> None:
    """Subscribers to ``number`` get its new state soon (nothing when there are none)."""
    if context.feed is not None:
        context.feed.refresh_soon(number)


async def _act(
    info: Info, action: ControlAction, data: Input, validate: Validator
) -> ModeratorActionPayload:
    context = info.context
    audited_members = _audited_members(data)

    def audit(outcome: str, error: GatewayError | None = None) -> None:
        audit_moderation(
            audit_action(action),
            identity=context.identity,
            number=data.number,
            operator=data.operator,
            members=audited_members,
            outcome=outcome,
            request_id=context.request_id,
            error=error,
        )

    try:
        checked: MemberAction = validate(action, data)
    except InvalidFieldsError as exc:
        audit("invalid", exc)
        raise
    try:
        context.admit(1)  # one PBX call on the caller's budget
        await apply_action(context.session, checked)
    except asyncio.CancelledError:
        # Only shutdown cancels a request: the PBX may have the action already; say so.
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        cut_off = PbxUnavailableError(
            f"the gateway is shutting down and stopped waiting for the PBX: the {action.value} "
            "may or may not have been done; look at the room before sending it again",
            endpoint=ENDPOINTS[action][0],
        )
        audit("unknown", cut_off)
        raise cut_off from None
    except GatewayError as exc:
        if may_have_acted(exc):
            context.live.forget()  # who is in the room, or muted, may have changed
            _tell_subscribers(context, checked.number)
        audit("unknown" if may_have_acted(exc) else "refused", exc)
        raise
    context.live.forget()  # the next read of the room's session asks the PBX
    _tell_subscribers(context, checked.number)
    audit("applied")
    return ModeratorActionPayload(
        number=checked.number,
        action=ModeratorAction[action.name],
        operator=checked.operator,
        members=list(checked.members),
        all=checked.everyone,
    )
