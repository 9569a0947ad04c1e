"""The runtime's own counters, read at every scrape (``/metrics``).

The cache, the PBX session, its request slots and breaker, the per-client budgets and the
fleet's Redis link keep their counts anyway; this collector reads them when Prometheus
scrapes, so there is one source of truth. The app's lifespan registers it
(:meth:`gateway.observability.metrics.Metrics.watch`) with the objects it reads, once they
exist, and unregisters it on shutdown.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.live.supervisor import KINDS
from gateway.pbx.breaker import CircuitState

if TYPE_CHECKING:
    from gateway.fleet.assemble import Fleet
    from gateway.live.feed import LiveFeed
    from gateway.live.fleet_run import FleetLive
    from gateway.live.supervisor import LiveHandle
    from gateway.pbx.client import PbxClient
    from gateway.pbx.session import PbxSession
    from gateway.security.rate_limit import RateLimiter
    from gateway.store import ConferenceStore


@dataclass(eq=False)  # the registry keys collectors by identity: keep them hashable
class RuntimeCollector(Collector):
    """Cache lookups and fetches, logins, PBX slots and breaker, budgets, Redis."""

    store: ConferenceStore
    session: PbxSession
    client: PbxClient
    requests: RateLimiter | None
    misses: RateLimiter
    fleet: Fleet | None = None
    live: LiveHandle | None = None
    feed: LiveFeed | None = None
    live_fleet: FleetLive | None = None

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        store, session = self.store.stats, self.session
        limiter, breaker = self.client.limiter, self.client.breaker
        cache = CounterMetricFamily(
            "gateway_cache_lookups", "Conference lookups by result.", labels=["result"]
        )
        cache.add_metric(["hit"], store.hits)
        cache.add_metric(["miss"], store.misses)
        cache.add_metric(["stale"], store.stale_served)
        cache.add_metric(["revalidate"], store.revalidations)
        yield cache
        fetches = CounterMetricFamily(
            "gateway_store_fetches", "PBX fetches the store started, by result.", labels=["result"]
        )
        fetches.add_metric(["ok"], store.fetches - store.failed_fetches)
        fetches.add_metric(["failed"], store.failed_fetches)
        yield fetches
        logins = CounterMetricFamily(
            "gateway_pbx_logins", "PBX logins by result.", labels=["result"]
        )
        logins.add_metric(["success"], session.logins)
        logins.add_metric(["failed"], session.failed_logins)
        yield logins
        yield GaugeMetricFamily("gateway_pbx_in_flight", "PBX calls in flight.", limiter.in_flight)
        yield GaugeMetricFamily(
            "gateway_pbx_queued", "PBX calls waiting for a slot.", limiter.waiting
        )
        yield CounterMetricFamily(
            "gateway_pbx_busy_rejections", "PBX calls refused: queue full.", limiter.rejected
        )
        state = GaugeMetricFamily(
            "gateway_circuit_state", "1 for the circuit breaker's current state.", labels=["state"]
        )
        for candidate in CircuitState:
            state.add_metric([candidate.value], 1.0 if breaker.state is candidate else 0.0)
        yield state
        yield CounterMetricFamily(
            "gateway_circuit_openings", "Times the circuit breaker opened.", breaker.opened_count
        )
        yield GaugeMetricFamily(
            "gateway_pbx_session_up", "1 while the gateway holds a PBX token.", session.has_token
        )
        if self.fleet is not None:
            yield GaugeMetricFamily(
                "gateway_redis_up",
                "1 while Redis answers (0: local fallback).",
                self.fleet.link.up,
            )
        if self.live is not None:
            yield from _live_metrics(self.live)
        if self.feed is not None:
            feed = self.feed
            yield GaugeMetricFamily(
                "gateway_live_subscribers", "Live subscriptions open now.", feed.subscribers
            )
            yield CounterMetricFamily(
                "gateway_live_updates",
                "Live updates sent to subscribers (INITIAL and changes).",
                feed.updates_sent,
            )
            yield CounterMetricFamily(
                "gateway_live_slow_consumers",
                "Live subscribers closed because they fell GATEWAY_LIVE_BUFFER updates behind.",
                feed.slow_consumers,
            )
        if self.live_fleet is not None:
            yield from _live_fleet_metrics(self.live_fleet)
        limited = CounterMetricFamily(
            "gateway_rate_limited", "Refusals by the per-client budgets.", labels=["budget"]
        )
        limited.add_metric(["requests"], self.requests.rejected if self.requests is not None else 0)
        limited.add_metric(["pbx_fetches"], self.misses.rejected)
        yield limited


def _live_metrics(live: LiveHandle) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """Where live changes come from, and what the source did."""
    supervisor = live.supervisor
    kind = GaugeMetricFamily(
        "gateway_live_source", "1 for the live source running now.", labels=["kind"]
    )
    for candidate in KINDS:
        kind.add_metric([candidate], 1.0 if supervisor.kind == candidate else 0.0)
    yield kind
    events = supervisor.events
    yield CounterMetricFamily(
        "gateway_live_channel_reconnects",
        "Report channel connection attempts after the first.",
        events.counts.reconnects if events is not None else 0,
    )
    yield CounterMetricFamily(
        "gateway_live_events",
        "ConferenceStatus events received (TCP report channel or HTTP push).",
        events.counts.channel.statuses if events is not None else 0,
    )
    yield CounterMetricFamily(
        "gateway_live_polls",
        "query_in_session calls made by the live poller.",
        supervisor.poller.counts.polls,
    )


def _live_fleet_metrics(live: FleetLive) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """The live lease (who runs the source) and the bus (what crossed it, what was refused)."""
    yield GaugeMetricFamily(
        "gateway_live_lease_held",
        "1 while this replica holds the fleet's live lease (runs the live source).",
        0.0 if live.lease.term is None else 1.0,
    )
    yield CounterMetricFamily(
        "gateway_live_lease_lost",
        "Holds of the live lease lost without releasing (fenced: the source was stopped).",
        live.lease.lost,
    )
    bus = live.bus
    yield CounterMetricFamily(
        "gateway_live_bus_published", "Live changes this replica published.", bus.published
    )
    yield CounterMetricFamily(
        "gateway_live_bus_applied", "Live changes heard from the holder and applied.", bus.applied
    )
    dropped = CounterMetricFamily(
        "gateway_live_bus_dropped",
        "Live bus messages dropped, by why (unsealed, stale, size, shape, fenced, outbox_full).",
        labels=["reason"],
    )
    for reason in ("unsealed", "stale", "size", "shape", "fenced", "outbox_full"):
        dropped.add_metric([reason], bus.dropped[reason])
    yield dropped
    yield CounterMetricFamily(
        "gateway_live_bus_resyncs",
        "Resyncs this replica asked the holder for (a re-subscription or a missed message).",
        bus.resyncs_asked,
    )
