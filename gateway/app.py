"""The application: ``create_app(settings)`` builds the gateway's ASGI app.

Nothing is built at import time. The lifespan owns the long-lived things, in order: the
one shared ``httpx.AsyncClient``, the PBX client and session (token keeper, heartbeat),
and the conference store; on shutdown it closes them in reverse, logging out of the PBX
before the HTTP client goes. Tests pass ``transport=`` (an in-process simulator) and
``clock=`` (to move TTLs without sleeping).
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from gateway.health import healthz, readyz
from gateway.pbx.breaker import CircuitBreaker
from gateway.pbx.client import PbxClient, build_http_client
from gateway.pbx.conference_query import query_conferences
from gateway.pbx.limiter import PbxLimiter
from gateway.pbx.session import PbxSession
from gateway.schema import build_schema
from gateway.schema.context import GatewayContext
from gateway.schema.numbers import NumberBudget
from gateway.settings import Settings
from gateway.store import ConferenceStore


@dataclass
class Runtime:
    """The long-lived objects the lifespan creates; ``app.state.runtime`` holds them."""

    settings: Settings
    client: PbxClient
    session: PbxSession
    store: ConferenceStore
    clock: Callable[[], float]


class GatewayGraphQL(GraphQL[GatewayContext, None]):
    """strawberry's ASGI view, with a fresh context (and DataLoader) per request."""

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> GatewayContext:
        runtime: Runtime = request.app.state.runtime
        return GatewayContext(
            store=runtime.store,
            numbers=NumberBudget(runtime.settings.max_numbers),
            deadline=runtime.clock() + runtime.settings.request_deadline,
            request=request if isinstance(request, Request) else None,
            response=response if isinstance(response, Response) else None,
        )


def create_app(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """The gateway's ASGI app for ``settings``."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with build_http_client(
            base_url=settings.pbx_url,
            timeout=settings.pbx_timeout,
            verify=settings.pbx_verify_tls,
            transport=transport,
        ) as http:
            client = PbxClient(
                http,
                limiter=PbxLimiter(
                    max_concurrency=settings.pbx_max_concurrency,
                    max_waiting=settings.pbx_max_waiting,
                ),
                breaker=CircuitBreaker(
                    threshold=settings.pbx_breaker_threshold,
                    cooldown=settings.pbx_breaker_cooldown,
                    clock=clock,
                ),
            )
            session = PbxSession(
                client,
                username=settings.pbx_username,
                password=settings.pbx_password,
                heartbeat_interval=settings.pbx_heartbeat_interval,
                login_cooldown=settings.pbx_login_cooldown,
                lockout_backoff=settings.pbx_lockout_backoff,
                clock=clock,
            )
            store = ConferenceStore(
                functools.partial(query_conferences, session),
                ttl=settings.cache_ttl,
                stale_ttl=settings.stale_ttl,
                revalidate_window=settings.revalidate_window,
                max_entries=settings.cache_max_entries,
                batch_size=settings.batch_size,
                clock=clock,
            )
            app.state.runtime = Runtime(
                settings=settings, client=client, session=session, store=store, clock=clock
            )
            session.start(login_now=settings.login_at_start)
            try:
                yield
            finally:
                await store.aclose()
                await session.close()  # log out last, while the HTTP client is still open

    graphql = GatewayGraphQL(build_schema(), graphql_ide="graphiql")
    return Starlette(
        routes=[
            Route("/graphql", graphql),
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
            Route("/readyz", readyz, methods=["GET", "HEAD"]),
            Route("/", _to_graphiql),
        ],
        lifespan=lifespan,
    )


async def _to_graphiql(request: Request) -> Response:
    return RedirectResponse("/graphql")
