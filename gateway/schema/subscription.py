"""The root ``Subscription``: who is in each room, pushed as it changes (``conferenceSessions``).

In order, before any update is sent:

1. the ``conferences:read`` scope, as ``Conference.session`` needs (``FORBIDDEN``);
2. the numbers, checked as ``conferences`` checks them (``BAD_USER_INPUT``: a null item by
   its position, a malformed number, past ``GATEWAY_MAX_NUMBERS``), before any PBX call;
   no numbers: every room on the PBX (the room listing ``conferences`` uses);
3. at most ``GATEWAY_LIVE_MAX_ROOMS`` rooms (``BAD_USER_INPUT``), before subscribing.

Then the live feed (:mod:`gateway.live.feed`) sends one ``INITIAL`` update per room, then one
update per change of a room. A room whose state could not be read at the start has its error
at that update's ``session`` path (null plus the error's code, as ``Conference.session``).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator
from typing import Annotated

import strawberry

from gateway.errors import BadInputError, GatewayError
from gateway.live.feed import LiveFeed, SessionUpdate, UpdateReason
from gateway.pbx.conferences import Conference
from gateway.schema.context import GatewayContext
from gateway.schema.live_types import ConferenceSessionNode
from gateway.schema.numbers import non_null_items
from gateway.schema.permissions import CanRead
from gateway.session_cache import SessionCache

Info = strawberry.Info[GatewayContext, None]

SubscriptionNumbers = Annotated[
    # ``[String]`` as in ``conferences``: a null item is refused by position (non_null_items).
    list[str | None] | None,
    strawberry.argument(
        description=(
            'Room numbers to watch, such as ["6400", "6401"]: digits only, one number per '
            "item; a null item or an empty list is refused (BAD_USER_INPUT, a null item named "
            "by its position). Leave out, or give null, for every room on the PBX. At most "
            "GATEWAY_LIVE_MAX_ROOMS rooms (100 by default)."
        )
    ),
]


@strawberry.enum(name="ConferenceSessionUpdateReason", description="Why an update was sent.")
class ConferenceSessionUpdateReason(enum.Enum):
    INITIAL = strawberry.enum_value(
        "INITIAL", description="The room's state when the subscription started (sent first)."
    )
    CHANGED = strawberry.enum_value(
        "CHANGED", description="Someone joined or left the room, or their status changed."
    )
    RESYNCED = strawberry.enum_value(
        "RESYNCED",
        description=(
            "The room's state read after the gateway's link to the PBX's events came back: "
            "it changed while the link was down."
        ),
    )


_REASONS = {reason: ConferenceSessionUpdateReason[reason.name] for reason in UpdateReason}


@strawberry.type(
    name="ConferenceSessionUpdate", description="A room's state: who is in it now, and why sent."
)
class ConferenceSessionUpdateNode:
    number: str = strawberry.field(description='The room, such as "6401".')
    reason: ConferenceSessionUpdateReason = strawberry.field(description="Why this was sent.")
    update: strawberry.Private[SessionUpdate]
    ids: strawberry.Private[SessionCache]

    @strawberry.field(
        description=(
            "Who is in the room now; null when nobody is. On an INITIAL update, null with an "
            "error at this path (PBX_UNAVAILABLE, FEATURE_UNAVAILABLE...) when the room's "
            "state could not be read: the next update for the room tells it."
        )
    )
    def session(self) -> ConferenceSessionNode | None:
        if self.update.error is not None:
            # One error object is shared by every subscriber whose read it failed: raised
            # with a fresh traceback each time, so the frames do not pile up on it.
            raise self.update.error.with_traceback(None)
        found = self.update.session
        return None if found is None else ConferenceSessionNode.of(found, self.ids)

    @classmethod
    def of(cls, update: SessionUpdate, ids: SessionCache) -> ConferenceSessionUpdateNode:
        """The schema's view of one update."""
        return cls(number=update.number, reason=_REASONS[update.reason], update=update, ids=ids)


async def _every_room(context: GatewayContext, feed: LiveFeed) -> list[str]:
    """Every room on the PBX (the listing ``conferences`` reads), refused past the cap."""
    # The feed's deadline, not the context's: over WebSocket one context serves a whole
    # connection, and its deadline counts from when the connection opened.
    rooms = await context.store.get_all(
        report=context.stale, deadline=feed.read_deadline(), admit=context.admit
    )
    numbers = [room.number for room in rooms if isinstance(room, Conference)]
    if len(numbers) > feed.max_rooms:
        raise BadInputError(
            f"the PBX has {len(numbers)} rooms; a subscription may watch at most "
            f"{feed.max_rooms} (GATEWAY_LIVE_MAX_ROOMS): give `numbers`"
        )
    return numbers


def _feed_of(context: GatewayContext) -> LiveFeed:
    if context.feed is None:
        raise GatewayError("live updates are not available here: the gateway has no feed")
    return context.feed


@strawberry.type(description="Live data, pushed as it changes.")
class Subscription:
    @strawberry.subscription(
        permission_classes=[CanRead],
        description=(
            "Who is in each room, as it changes: first one INITIAL update per room, in the "
            "order asked, with its current state; then one update each time a room's "
            "participants change (CHANGED, or RESYNCED after the gateway's link to the PBX's "
            "events came back). A room nobody is in has session null. A number that is no "
            "room is null throughout. A client that falls GATEWAY_LIVE_BUFFER updates behind "
            "is closed with SLOW_CONSUMER."
        ),
    )
    async def conference_sessions(
        self, info: Info, numbers: SubscriptionNumbers = strawberry.UNSET
    ) -> AsyncGenerator[ConferenceSessionUpdateNode, None]:
        context = info.context
        feed = _feed_of(context)
        if feed.closed:
            return  # the gateway is stopping: complete at once
        if numbers is None or numbers is strawberry.UNSET:
            wanted = await _every_room(context, feed)
        else:
            wanted = context.numbers.admit(non_null_items(numbers))
            if not wanted:  # a stream that could never send anything would only hold a slot
                raise BadInputError(
                    "numbers is empty: give at least one room number, or leave numbers out "
                    "for every room"
                )
        if not wanted:
            return  # a PBX without rooms: nothing to watch
        context.live_read = True  # nothing of this may be cached
        async with feed.subscribe(wanted, admit=context.admit) as subscription:
            async for update in subscription:
                yield ConferenceSessionUpdateNode.of(update, feed.cache)
