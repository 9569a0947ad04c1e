"""The gateway's long-lived objects, created by the app's lifespan.

``app.state.runtime`` holds one :class:`Runtime`; the GraphQL view, health probes and
metrics read it, and tests use it for white-box counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.observability.metrics import Metrics
from gateway.pbx.client import PbxClient
from gateway.pbx.session import PbxSession
from gateway.security.rate_limit import RateLimiter
from gateway.settings import Settings
from gateway.store import ConferenceStore

if TYPE_CHECKING:
    from gateway.fleet.assemble import Fleet


@dataclass
class Runtime:
    """The long-lived objects the lifespan creates; ``app.state.runtime`` holds them."""

    settings: Settings
    client: PbxClient
    session: PbxSession
    store: ConferenceStore
    requests: RateLimiter | None
    """The per-identity request budget; None unless GATEWAY_RATE_LIMIT is set."""
    misses: RateLimiter
    metrics: Metrics
    clock: Callable[[], float]
    fleet: Fleet | None = None
    """Redis-shared state, with GATEWAY_REDIS_URL."""
