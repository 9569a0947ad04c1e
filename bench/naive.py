"""The naive baseline: the gateway's schema, resolving straight to the PBX on every field.

Same GraphQL shape (``Query.conferences`` / ``Query.conference`` returning the gateway's
``Conference`` type), same input checks, same PBX protocol (``PbxClient``, one logged-in
``PbxSession``, ``query_conferences``), but no DataLoader and no cache: each field of each
request is one ``conference/query``. Its client keeps ``PbxClient``'s own defaults (two
requests at once, up to 1,000 waiting), so it queues behind the PBX rather than refusing,
and its throughput is what the PBX itself sustains.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import strawberry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from gateway.pbx.client import PbxClient, build_http_client
from gateway.pbx.conference_query import query_conferences
from gateway.pbx.conferences import Room, UnreadableRoom
from gateway.pbx.session import PbxSession
from gateway.schema import GatewaySchema
from gateway.schema.numbers import check_numbers
from gateway.schema.types import ConferenceNode
from gateway.settings import Settings


class Everyone:
    """An identity that holds every scope: the baseline measures cost, not access control.

    The gateway's field permissions (where the tree has them) ask ``context.identity``.
    """

    name = "bench"

    def has(self, scope: str) -> bool:
        """Every scope is granted."""
        return True


@dataclass
class NaiveContext:
    """Per request: the one shared PBX session."""

    session: PbxSession
    identity: Everyone = field(default_factory=Everyone)


Info = strawberry.Info[NaiveContext, None]


async def resolve_conferences(
    info: Info, numbers: list[str] | None = strawberry.UNSET
) -> list[ConferenceNode]:
    """One PBX call for this field: the numbers as one comma list, or ``all``."""
    session = info.context.session
    if numbers is None or numbers is strawberry.UNSET:
        everything = await query_conferences(session, "all")
        return [_node(room) for room in everything.values()]
    wanted = check_numbers(numbers)
    found = await query_conferences(session, wanted)
    return [_node(found[number]) for number in wanted if number in found]


async def resolve_conference(info: Info, number: str) -> ConferenceNode | None:
    """One PBX call for this field, even when another field asked for the same room."""
    (wanted,) = check_numbers([number])
    found = await query_conferences(info.context.session, [wanted])
    room = found.get(wanted)
    return None if room is None else _node(room)


def _node(room: Room) -> ConferenceNode:
    if isinstance(room, UnreadableRoom):
        raise room.error()  # the naive gateway fails the field; the real one, just the item
    return ConferenceNode.of(room)


@strawberry.type(name="Query")
class NaiveQuery:
    conferences: list[ConferenceNode] = strawberry.field(resolver=resolve_conferences)
    conference: ConferenceNode | None = strawberry.field(resolver=resolve_conference)


class NaiveGraphQL(GraphQL[NaiveContext, None]):
    """strawberry's ASGI view with the shared session as context."""

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> NaiveContext:
        session: PbxSession = request.app.state.session
        return NaiveContext(session=session)


def create_naive_app(settings: Settings) -> Starlette:
    """The naive gateway for ``settings`` (only the PBX URL and credentials are used)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with build_http_client(
            base_url=settings.pbx_url, timeout=settings.pbx_timeout, verify=settings.pbx_verify_tls
        ) as http:
            session = PbxSession(
                PbxClient(http), username=settings.pbx_username, password=settings.pbx_password
            )
            app.state.session = session
            session.start(login_now=True)
            try:
                yield
            finally:
                await session.close()

    async def readyz(request: Request) -> Response:
        ready = request.app.state.session.has_token
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    schema = GatewaySchema(query=NaiveQuery)
    return Starlette(
        routes=[Route("/graphql", NaiveGraphQL(schema)), Route("/readyz", readyz)],
        lifespan=lifespan,
    )
