"""The root ``Query``: conferences by number, or all of them."""

from __future__ import annotations

import asyncio
from typing import Annotated, cast

import strawberry

from gateway.pbx.conferences import Conference, UnreadableRoomError
from gateway.schema.context import GatewayContext
from gateway.schema.numbers import non_null_items
from gateway.schema.permissions import CanRead
from gateway.schema.types import ConferenceNode

Info = strawberry.Info[GatewayContext, None]

NumbersArgument = Annotated[
    # ``[String]``, exactly the contract's type: a client's ``[String]``, ``[String!]`` or
    # ``[String]!`` variable fits it; a null item is refused by position (non_null_items).
    list[str | None] | None,
    strawberry.argument(
        description=(
            'Room numbers, such as ["6400", "6401"]: digits only, one number per item; a '
            "null item is refused (BAD_USER_INPUT naming its position). Leave out, or give "
            "null, for every room."
        )
    ),
]
NumberArgument = Annotated[
    str, strawberry.argument(description='The room number, such as "6400": digits only.')
]


def _item(room: Conference | BaseException) -> ConferenceNode | None:
    """A list item: the room, or its error, which graphql-core turns into null plus an
    error at this item's path (the list type's items are nullable for this)."""
    if isinstance(room, Exception):
        return cast(ConferenceNode, room)  # graphql-core raises it at the item's path
    if isinstance(room, BaseException):  # cancelled: not a room's error
        raise room
    return ConferenceNode.of(room)


@strawberry.type(description="Read the PBX's conference rooms.")
class Query:
    @strawberry.field(
        permission_classes=[CanRead],
        description=(
            "Conference rooms, in the order asked. Numbers the PBX does not know are left out "
            "and duplicates are returned once. Without `numbers`, every room on the PBX. An "
            "item is null, with an error at its path (such as conferences.2), when the PBX "
            "sent that room in a shape the gateway cannot read; the other rooms are answered."
        ),
    )
    async def conferences(
        self, info: Info, numbers: NumbersArgument = strawberry.UNSET
    ) -> list[ConferenceNode | None]:
        context = info.context
        if numbers is None or numbers is strawberry.UNSET:  # absent or null: every room
            # The store fills per-room entries from this listing, so other fields of the
            # same request that need single rooms find them there: no priming needed.
            everything = await context.store.get_all(
                report=context.stale, deadline=context.deadline, admit=context.admit
            )
            return [_item(room) for room in everything]
        wanted = context.numbers.admit(non_null_items(numbers))
        # Each room on its own: one that cannot be read fails at its own path, not the list.
        found = await asyncio.gather(
            *(context.loader.load(number) for number in wanted), return_exceptions=True
        )
        for room in found:  # any other error (the PBX down, a refusal) fails the field, once
            if isinstance(room, BaseException) and not isinstance(room, UnreadableRoomError):
                raise room
        return [_item(room) for room in found if room is not None]

    @strawberry.field(
        permission_classes=[CanRead],
        description="One conference room; null when the PBX has no such room.",
    )
    async def conference(self, info: Info, number: NumberArgument) -> ConferenceNode | None:
        context = info.context
        (wanted,) = context.numbers.admit([number])
        found = await context.loader.load(wanted)
        return None if found is None else ConferenceNode.of(found)
