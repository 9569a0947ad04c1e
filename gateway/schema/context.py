"""What every resolver of one GraphQL request can reach.

A new context, with a new DataLoader, is made per request (strawberry's loader caches
futures and failures for its whole life, so sharing one across requests would pin old
answers and errors). Data shared across requests lives in the store below it.

Resolvers and extensions read it typed: ``strawberry.Info[GatewayContext, None]``, or,
where strawberry hands over its context untyped (extensions), :func:`gateway_context`.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response
from strawberry.dataloader import DataLoader

from gateway.errors import RateLimitedError, retry_seconds
from gateway.live.feed import LiveFeed
from gateway.observability.metrics import Metrics
from gateway.pbx.conferences import Conference
from gateway.pbx.session import PbxSession
from gateway.pbx.sessions_query import LiveSession
from gateway.schema.document_budget import RequestBudget
from gateway.schema.numbers import NumberBudget
from gateway.security.identity import Identity
from gateway.security.rate_limit import RateLimiter
from gateway.session_cache import SessionCache
from gateway.store import ConferenceStore, ServedReport

ConferenceLoader = DataLoader[str, Conference | None]
SessionLoader = DataLoader[str, LiveSession | None]


@dataclass
class GatewayContext:
    """Per-request state: the loader over the shared store, and the request's budgets."""

    store: ConferenceStore
    numbers: NumberBudget
    identity: Identity
    session: PbxSession
    """The gateway's one PBX session: the mutation sends its change through it."""
    live: SessionCache
    """Who is in each room (``Conference.session``), shared by every request."""
    feed: LiveFeed | None = None
    """This process's live subscribers (``conferenceSessions``); None: live updates are
    off here (a schema executed without the app)."""
    misses: RateLimiter | None = None
    """The caller's budget of PBX fetches (cache misses)."""
    deadline: float | None = None
    """The store's clock value at which PBX waits give up (stale or a timeout error)."""
    request: Request | None = None
    response: Response | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    metrics: Metrics | None = None
    response_cached: bool = False
    """Whether the answer came from the response cache (no execution)."""
    fetches_started: int = 0
    """PBX fetches this request started (for its log line)."""
    stale: ServedReport = field(default_factory=ServedReport)
    """What was served stale, and the oldest ``fetched_at`` of everything served."""
    document_budget: RequestBudget | None = None
    """Fields and spreads this request's documents may still select (a batch shares it)."""
    live_read: bool = False
    """Whether a ``session`` was read: the answer is then kept by no cache (it would
    outlive the seconds live data is fresh for)."""
    loader: ConferenceLoader = field(init=False)
    sessions: SessionLoader = field(init=False)

    def __post_init__(self) -> None:
        # One batch per request tick: every `conference`/`conferences` field that
        # resolves together lands in one store.get_many, hence one PBX call.
        self.loader = DataLoader(
            load_fn=functools.partial(
                self.store.get_many,
                report=self.stale,
                deadline=self.deadline,
                admit=self.admit,
                # Past its fetch budget, the caller's misses wait for its next PBX call.
                client=self.identity.name,
            )
        )
        # Its own loader: every `session` of the request in one lookup, at most one PBX call.
        self.sessions = DataLoader(
            load_fn=functools.partial(self.live.get_many, deadline=self.deadline, admit=self.admit)
        )

    def admit(self, fetches: int) -> None:
        """Charge the caller's miss budget for ``fetches`` new PBX fetches, or refuse them."""
        if self.misses is None:
            self.fetches_started += fetches
            return
        wait = self.misses.take(self.identity.name, fetches)
        if wait > 0:
            error = RateLimitedError(
                f"{self.identity.name} asked for too many rooms that are not cached; the PBX "
                f"is protected by a per-client budget of fetches; retry in {retry_seconds(wait)} s",
                retry_after=wait,
            )
            if self.response is not None:
                self.response.headers["Retry-After"] = str(error.retry_after)
            raise error
        self.fetches_started += fetches


def gateway_context(context: object) -> GatewayContext | None:
    """``context`` when it is the gateway's, else None (a schema executed on its own, as
    some tests do, has none: extensions then leave the request alone)."""
    return context if isinstance(context, GatewayContext) else None
