"""The application: ``create_app(settings)`` builds the gateway's ASGI app.

Nothing is built at import time. The lifespan owns the long-lived things, in order: the
one shared ``httpx.AsyncClient``, the PBX client and session (token keeper, heartbeat),
and the conference store; on shutdown it closes them in reverse, logging out of the PBX
before the HTTP client goes. Tests pass ``transport=`` (an in-process simulator) and
``clock=`` (to move TTLs without sleeping); ``extra_routes=`` are served beside the
gateway's own (the demo adds its examples).

The lifespan hands the long-lived objects on as typed state (:class:`gateway.runtime.
GatewayState`, read by handlers through :func:`gateway.runtime.runtime_of`), registers the
metrics collector over them, and gives the PBX client its metrics observer as it builds it.

Around ``/graphql``, outermost first: CORS (an explicit origin allowlist), then the
security gate (body size, authentication, request rate), then strawberry's view. In
front of all of it, the hot path (:mod:`gateway.http.hot_path`) answers repeated reads
from the response cache with the same effect, and hands everything else on unchanged.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from gateway.conference_codec import ALL
from gateway.graphiql import graphiql_routes
from gateway.graphql_view import GatewayGraphQL
from gateway.health import healthz, readyz
from gateway.http.hot_path import PATH, HotPath
from gateway.live.feed import LiveFeed
from gateway.live.push_receiver import AsgiApp, PushEndpoint
from gateway.live.supervisor import start_live
from gateway.observability.metrics import Metrics
from gateway.observability.runtime_metrics import RuntimeCollector
from gateway.observability.tracing import pbx_call_span
from gateway.pbx.breaker import CircuitBreaker
from gateway.pbx.client import PbxClient, build_http_client
from gateway.pbx.conference_query import query_conferences
from gateway.pbx.field_notes import FieldNotes
from gateway.pbx.limiter import PbxLimiter
from gateway.pbx.session import PbxSession
from gateway.pbx.sessions_query import MemberNotes, query_in_session
from gateway.runtime import GatewayState, Runtime
from gateway.schema import build_schema
from gateway.schema.response_cache import ResponseCache
from gateway.security.config import SecuritySettings
from gateway.security.gate import Authenticator, GraphQLGate
from gateway.security.rate_limit import RateLimiter
from gateway.serving import LoopbackServer
from gateway.session_cache import SessionCache
from gateway.settings import Settings
from gateway.store import ConferenceStore

if TYPE_CHECKING:
    from gateway.http_guard import ConnectionGuard

__all__ = ["GatewayApp", "create_app"]


def create_app(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.monotonic,
    extra_routes: Sequence[BaseRoute] = (),
    hot_path: bool = True,
) -> GatewayApp:
    """The gateway's ASGI app for ``settings``; ``hot_path=False`` sends every request the
    full path (the tests compare the two)."""
    security = settings.security
    misses = RateLimiter(rate=security.miss_rate, burst=security.miss_burst, clock=clock)
    requests = request_limiter(security, clock)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: GatewayApp) -> AsyncIterator[GatewayState]:
        fleet = None
        if settings.redis_url is not None:
            from gateway.fleet.assemble import open_fleet  # the redis extra, only when used

            fleet = await open_fleet(settings)
        async with build_http_client(
            base_url=settings.pbx_url,
            timeout=settings.pbx_timeout,
            verify=settings.pbx_verify_tls,
            transport=transport,
        ) as http:
            client = PbxClient(
                http,
                tracer=pbx_call_span,
                limiter=PbxLimiter(
                    max_concurrency=settings.pbx_max_concurrency,
                    max_waiting=settings.pbx_max_waiting,
                    fleet=fleet.slots if fleet else None,
                    # A call we gave up on may still be running at the PBX: keep its slot.
                    linger=(
                        settings.pbx_timeout
                        if settings.pbx_timeout_linger is None
                        else settings.pbx_timeout_linger
                    ),
                ),
                breaker=CircuitBreaker(
                    threshold=settings.pbx_breaker_threshold,
                    cooldown=settings.pbx_breaker_cooldown,
                    clock=clock,
                ),
                observer=metrics.observe_pbx_call,
            )
            # HTTP push (when the PBX's report method is HTTP): every login says where to.
            push = (
                PushEndpoint.create(settings.live_push_port, settings.live_push_bind)
                if settings.live_push_port is not None
                else None
            )
            session = PbxSession(
                client,
                username=settings.pbx_username,
                password=settings.pbx_password,
                heartbeat_interval=settings.pbx_heartbeat_interval,
                login_cooldown=settings.pbx_login_cooldown,
                lockout_backoff=settings.pbx_lockout_backoff,
                clock=clock,
                tokens=fleet.tokens if fleet else None,
                login_extras=push.login_fields() if push is not None else None,
            )
            store = ConferenceStore(
                functools.partial(
                    query_conferences,
                    session,
                    notes=FieldNotes(settings.cache_ttl, clock=clock),  # once per room+field+TTL
                ),
                ttl=settings.cache_ttl,
                stale_ttl=settings.stale_ttl,
                revalidate_window=settings.revalidate_window,
                max_entries=settings.cache_max_entries,
                batch_size=settings.batch_size,
                lanes=settings.pbx_max_concurrency,
                clock=clock,
                shared=fleet.cache if fleet else None,
            )
            live = SessionCache(
                functools.partial(
                    query_in_session,
                    session,
                    ALL,  # one listing answers every room: see gateway.session_cache
                    notes=MemberNotes(settings.cache_ttl, clock=clock),
                ),
                ttl=settings.session_ttl,
                clock=clock,
            )
            feed = LiveFeed(
                live,
                buffer=settings.live_buffer,
                max_rooms=settings.live_max_rooms,
                read_timeout=settings.request_deadline,
                clock=clock,
            )
            # Where live changes come from (events or polling); they go to the feed, which
            # tells its subscribers and patches the session cache. In a fleet only the
            # lease holder runs the source, into the bus that reaches every replica's feed.
            live_notes = MemberNotes(settings.cache_ttl, clock=clock)
            live_fleet = None
            if fleet is None or settings.redis_token_key is None:
                live_sources = start_live(
                    settings, session, feed, notes=live_notes, push=push, serve=_serve_push
                )
            else:
                from gateway.live.fleet_run import start_fleet_live  # the redis extra

                live_sources, live_fleet = start_fleet_live(
                    settings,
                    session,
                    fleet.link,
                    settings.redis_token_key,
                    feed,
                    notes=live_notes,
                    push=push,
                    serve=_serve_push,
                )
            runtime = Runtime(
                settings=settings,
                client=client,
                session=session,
                store=store,
                live=live,
                feed=feed,
                requests=requests,
                misses=misses,
                metrics=metrics,
                clock=clock,
                fleet=fleet,
                live_sources=live_sources,
                live_fleet=live_fleet,
            )
            app.runtime = runtime
            unwatch = metrics.watch(
                RuntimeCollector(
                    store=store,
                    session=session,
                    client=client,
                    requests=requests,
                    misses=misses,
                    fleet=fleet,
                    feed=feed,
                    live=runtime.live_sources,
                    live_fleet=live_fleet,
                )
            )
            session.start(login_now=settings.login_at_start)
            listener = asyncio.create_task(store.listen_for_invalidations())
            try:
                yield {"runtime": runtime}
            finally:
                unwatch()
                await feed.close()  # subscriptions complete; none is left waiting
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
                await runtime.live_sources.aclose()  # closes the report channel
                await store.aclose()
                await live.aclose()
                await session.close()  # log out last, while the HTTP client is still open
                if fleet is not None:
                    await fleet.close()

    # Shared by the schema (which fills it) and the view's fast path.
    answers = ResponseCache(settings.response_cache_bytes, ttl=settings.cache_ttl, clock=clock)
    graphql = GatewayGraphQL(
        build_schema(security, answers, share_live_updates=settings.live_share_updates),
        settings,
        clock=clock,
        answers=answers,
    )
    authenticator = Authenticator(security)
    gate = GraphQLGate(
        graphql,
        settings=security,
        authenticator=authenticator,
        requests=requests,
        clock=clock,
        metrics=metrics,
    )
    middleware = []
    cors = None
    if security.cors_origins:
        # Credentials travel in the Authorization header, never cookies: no allow_credentials.
        cors_options: dict[str, Any] = {
            "allow_origins": list(security.cors_origins),
            "allow_methods": ["GET", "POST"],
            "allow_headers": ["authorization", "content-type", "x-api-key"],
            "max_age": 600,
        }
        middleware.append(Middleware(CORSMiddleware, **cors_options))
        cors = CORSMiddleware(_unreachable, **cors_options)  # the hot path's, for its headers
    app = GatewayApp(
        metrics,
        HotPath(
            answers=answers,
            caching=graphql.caching,
            security=security,
            authenticator=authenticator,
            gate=gate,
            requests=requests,
            cors=cors,
            clock=clock,
            compiled=graphql.compiled,
        )
        if hot_path
        else None,
        routes=[
            Route("/graphql", gate),
            WebSocketRoute("/graphql", gate),  # subscriptions: graphql-transport-ws
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
            Route("/readyz", readyz, methods=["GET", "HEAD"]),
            Route("/metrics", metrics.endpoint, methods=["GET"]),
            Route("/", _to_graphiql),
            *(graphiql_routes(directory=settings.graphiql_assets_dir) if security.graphiql else ()),
            *extra_routes,
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
    metrics.watch_response_cache(answers)
    return app


class GatewayApp(Starlette):
    """The gateway's Starlette app, with its metrics and (once started) its runtime.

    ``runtime`` is for white-box readers (tests, ``scripts/chaos.py``): it is set when the
    lifespan has built the long-lived objects and kept after shutdown, for their counts.
    Handlers read the runtime from the request's state (:func:`gateway.runtime.runtime_of`).
    """

    def __init__(self, metrics: Metrics, hot_path: HotPath | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics
        self.hot_path = hot_path
        self.runtime: Runtime | None = None

    def begin_shutdown(self) -> None:
        """The server stops accepting: live subscriptions complete now, before it waits for
        in-flight responses (a subscription would hold the whole grace period)."""
        if self.runtime is not None:
            self.runtime.feed.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = self.hot_path
        if hot is not None and scope["type"] == "http" and scope["path"] == PATH:
            rest = await hot.serve(scope, receive, send)
            if rest is None:
                return  # answered
            receive = rest
        await super().__call__(scope, receive, send)

    def watch_connections(self, guard: ConnectionGuard) -> None:
        """``/metrics`` reports the serving HTTP server's connections (LoopbackServer)."""
        self.metrics.watch_connections(guard)


def request_limiter(security: SecuritySettings, clock: Callable[[], float]) -> RateLimiter | None:
    """The per-identity request budget, or None: it is opt-in (``GATEWAY_RATE_LIMIT``).

    Off by default because a cached read costs the PBX nothing; the PBX is guarded by the
    concurrency cap, the cache, single-flight and the PBX-fetch budget. A request budget
    is for operators who want to bound what each client may ask of the gateway itself.
    """
    if security.rate is None:
        return None
    burst = security.burst if security.burst is not None else max(1.0, 2 * security.rate)
    return RateLimiter(rate=security.rate, burst=burst, clock=clock)


def _serve_push(app: AsgiApp, host: str, port: int) -> LoopbackServer:
    """The push receiver's own listener: the same bounded server as the gateway's."""
    return LoopbackServer(app, host, port)


async def _unreachable(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("the hot path's CORSMiddleware only decorates its answers")


async def _to_graphiql(request: Request) -> Response:
    return RedirectResponse("/graphql")
