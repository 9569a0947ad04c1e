"""The root ``Mutation``: change one conference room's settings (the moderator controls
come from :mod:`gateway.schema.moderation`).

In order, and nothing reaches the PBX before the last two steps:

1. scopes: ``conferences:write``, and ``conferences:pins`` too when a PIN is given
   (``FORBIDDEN``; permission classes below, so the resolver never runs);
2. the input's rules (``BAD_USER_INPUT``, every violation at once);
3. the caller's budget of PBX calls, charged two: the change and its read-back;
4. one ``conference/update``, never retried (:mod:`gateway.pbx.conference_update`);
   bounded by ``PBX_TIMEOUT`` but not by the request deadline, which would abandon a
   change half-way and leave its outcome unknown for no gain;
5. the store forgets the room (fresh, stale and the ``all`` listing; with a fleet, in
   Redis and on every replica too), then reads it back with one fresh
   ``conference/query``, which refills the cache for everyone.

Each attempt leaves one ``gateway.audit`` line naming the client, the room and the
fields, never their values. A change cut off by shutdown (its grace ran out while the
PBX had it) is audited ``unknown`` and answered ``PBX_UNAVAILABLE``, never left unsaid.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import strawberry

from gateway.errors import (
    GatewayError,
    InvalidFieldsError,
    PbxProtocolError,
    PbxRateLimitedError,
    PbxUnavailableError,
)
from gateway.observability.audit import audit_change
from gateway.pbx.conference_update import may_have_applied, update_conference
from gateway.pbx.conferences import Conference
from gateway.schema.conference_update_input import (
    SCHEMA_NAMES,
    UpdateConferenceInput,
    validate_update,
)
from gateway.schema.context import GatewayContext, gateway_context
from gateway.schema.moderation import ModeratorMutations
from gateway.schema.permissions import RequireScope
from gateway.schema.types import ConferenceNode
from gateway.security.identity import PINS, WRITE

Info = strawberry.Info[GatewayContext, None]

ACTION = "conference.update"

InputArgument = Annotated[
    UpdateConferenceInput,
    strawberry.argument(description="The room's number and the settings to change."),
]


def _given(kwargs: dict[str, Any]) -> tuple[str, list[str]]:
    data = kwargs.get("input")
    if not isinstance(data, UpdateConferenceInput):
        return "", []
    return data.number, [SCHEMA_NAMES[name] for name in data.given()]


def _audit_denied(info: Info, kwargs: dict[str, Any]) -> None:
    number, fields = _given(kwargs)
    context = gateway_context(info.context)
    audit_change(
        ACTION,
        identity=context.identity if context is not None else None,
        number=number,
        fields=fields,
        outcome="denied",
        request_id=context.request_id if context is not None else None,
    )


class CanWrite(RequireScope):
    scope = WRITE
    message = f"the caller lacks the {WRITE} scope needed to change conferences"

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        allowed = super().has_permission(source, info, **kwargs)
        if not allowed:
            _audit_denied(info, kwargs)
        return allowed


class CanSetPins(RequireScope):
    """Asked only when the input gives a PIN: setting one needs the PINs scope too."""

    scope = PINS
    message = (
        f"the caller lacks the {PINS} scope needed to set participantPassword or "
        "moderatorPassword; leave them out to change the other settings"
    )

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        data = kwargs.get("input")
        if isinstance(data, UpdateConferenceInput) and not data.sets_pins():
            return True
        allowed = super().has_permission(source, info, **kwargs)
        if not allowed:
            _audit_denied(info, kwargs)
        return allowed


@strawberry.type(
    description=(
        "The outcome of updateConference: the settings that were changed and the room as "
        "the PBX reports it afterwards."
    )
)
class UpdateConferencePayload:
    changed_fields: list[str] = strawberry.field(
        description=(
            'The settings sent to the PBX, by their names in this schema (such as "name" or '
            '"participantPassword"), in schema order. Never their values.'
        )
    )
    read_back: strawberry.Private[Conference | Exception | None]

    @strawberry.field(
        description=(
            "The room as the PBX reports it after the change, read with one fresh query "
            "(which also refreshes the gateway's cache). null only when that read failed, "
            "with an error at this path saying why; the change itself was applied."
        )
    )
    def conference(self) -> ConferenceNode | None:
        if isinstance(self.read_back, Exception):
            raise self.read_back
        if self.read_back is None:
            raise PbxProtocolError(
                "the PBX accepted the change but no longer reports the room; query it again",
                endpoint="conference/query",
            )
        return ConferenceNode.of(self.read_back)


@strawberry.type(
    description=("Change the PBX's conference rooms, and act on the participants of running ones.")
)
class Mutation(ModeratorMutations):
    @strawberry.mutation(
        permission_classes=[CanWrite, CanSetPins],
        description=(
            "Change some settings of one conference room; settings left out keep their "
            "value. Needs the conferences:write scope, and conferences:pins as well to set "
            "a PIN. Sent to the PBX once and never retried by the gateway: after a "
            "PBX_UNAVAILABLE error the change may or may not have been applied, so query "
            "the room before sending it again. PBX_RATE_LIMITED means nothing was changed: "
            "send it again after extensions.retryAfter seconds."
        ),
    )
    async def update_conference(self, info: Info, input: InputArgument) -> UpdateConferencePayload:
        context = info.context
        fields = [SCHEMA_NAMES[name] for name in input.given()]

        def audit(number: str, outcome: str, error: GatewayError | None = None) -> None:
            audit_change(
                ACTION,
                identity=context.identity,
                number=number,
                fields=fields,
                outcome=outcome,
                request_id=context.request_id,
                error=error,
            )

        try:
            changes = validate_update(input)
        except InvalidFieldsError as exc:
            audit(input.number, "invalid", exc)
            raise
        try:
            context.admit(2)  # the change and its read-back, on the caller's PBX budget
            await update_conference(context.session, changes)
        except asyncio.CancelledError:
            # Only shutdown cancels a request (its grace ran out). The change may be on the
            # PBX already: say so in the audit trail and to the client, never a bare 500.
            _uncancel()
            cut_off = PbxUnavailableError(
                "the gateway is shutting down and stopped waiting for the PBX: the change "
                "may or may not have been applied; query the room before sending it again",
                endpoint="conference/update",
            )
            context.store.forget(changes.number)  # here only: the fleet may be closing
            audit(changes.number, "unknown", cut_off)
            raise cut_off from None
        except GatewayError as exc:
            unknown = may_have_applied(exc)
            if unknown:  # it may have changed: whatever the cache holds may be wrong now
                await context.store.invalidate(changes.number)
            audit(changes.number, "unknown" if unknown else "refused", exc)
            if isinstance(exc, PbxRateLimitedError) and context.response is not None:
                context.response.headers["Retry-After"] = str(exc.retry_after)
            raise
        # Forget first, here and (with a fleet) in Redis and on every replica: a query
        # already under way may bring back the old value, and the store will not keep it
        # (see ConferenceStore.forget); the read-back is a fetch of its own.
        await context.store.invalidate(changes.number)
        audit(changes.number, "applied")
        read_back: Conference | Exception | None
        try:
            (read_back,) = await context.store.get_many(
                [changes.number], report=context.stale, deadline=context.deadline
            )
        except asyncio.CancelledError:  # shutdown again: the change is in, say so
            _uncancel()
            read_back = PbxUnavailableError(
                "the change was applied; the gateway is shutting down and did not read the "
                "room back",
                endpoint="conference/query",
            )
        return UpdateConferencePayload(changed_fields=fields, read_back=read_back)


def _uncancel() -> None:
    """Take back the cancellation just handled, so the answer can still be sent."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
