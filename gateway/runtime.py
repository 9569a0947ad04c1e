"""The gateway's long-lived objects, built by the app's lifespan and handed on as typed state.

The lifespan (:func:`gateway.app.create_app`) builds one :class:`Runtime` and yields it as
:class:`GatewayState`, Starlette's typed lifespan state: the server copies it into every
request's ``scope["state"]``, where HTTP handlers (the GraphQL view, the health probes)
read it through :func:`runtime_of`. Resolvers never see the runtime: the view hands them
what they need in the typed :class:`gateway.schema.context.GatewayContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from starlette.requests import HTTPConnection

from gateway.live.feed import LiveFeed
from gateway.live.supervisor import LiveHandle
from gateway.observability.metrics import Metrics
from gateway.pbx.client import PbxClient
from gateway.pbx.session import PbxSession
from gateway.security.rate_limit import RateLimiter
from gateway.session_cache import SessionCache
from gateway.settings import Settings
from gateway.store import ConferenceStore

if TYPE_CHECKING:
    from gateway.fleet.assemble import Fleet
    from gateway.live.fleet_run import FleetLive


@dataclass
class Runtime:
    """The long-lived objects the lifespan creates (one per app, for its whole life)."""

    settings: Settings
    client: PbxClient
    session: PbxSession
    store: ConferenceStore
    live: SessionCache
    """Who is in each room: the briefly cached ``query_in_session`` listing."""
    feed: LiveFeed
    """This process's live subscribers; a source tells it what changes (a LiveSink)."""
    requests: RateLimiter | None
    """The per-identity request budget; None unless GATEWAY_RATE_LIMIT is set."""
    misses: RateLimiter
    metrics: Metrics
    clock: Callable[[], float]
    live_sources: LiveHandle
    """Where live changes come from (the report channel or the poller), running."""
    fleet: Fleet | None = None
    """Redis-shared state, with GATEWAY_REDIS_URL."""
    live_fleet: FleetLive | None = None
    """With Redis: the live lease and bus (only the holder runs ``live_sources``' source)."""


class GatewayState(TypedDict):
    """What the lifespan yields; Starlette copies it into each request's state."""

    runtime: Runtime


class NotStarted(RuntimeError):
    """A request reached a handler that needs the runtime, but no lifespan handed one on."""


def runtime_of(connection: HTTPConnection) -> Runtime | None:
    """The runtime the lifespan handed on to this request, or None (the lifespan has not
    run: the server was started with ``lifespan="off"``, or start-up is not done)."""
    state = connection.scope.get("state") or {}
    runtime = state.get("runtime")
    return runtime if isinstance(runtime, Runtime) else None


def require_runtime(connection: HTTPConnection) -> Runtime:
    """:func:`runtime_of`, for handlers that cannot answer without it."""
    runtime = runtime_of(connection)
    if runtime is None:
        raise NotStarted("the gateway's lifespan has not started: no runtime to serve from")
    return runtime
