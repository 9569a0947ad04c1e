"""Prometheus metrics at ``/metrics``, one registry per app.

Event metrics (GraphQL requests, PBX calls, latencies) are recorded as they happen;
state the gateway keeps anyway (cache counters, logins, queue, breaker, rate limits) is
read at scrape time by collectors over the objects that keep it
(:mod:`gateway.observability.runtime_metrics`, registered by the app's lifespan), so
there is one source of truth.

Label cardinality is bounded: no room numbers or client identities; operation names are
sanitised and the first ``MAX_OPERATION_NAMES`` distinct ones are kept, later ones count
as ``other``; errno labels are limited to the documented codes.
"""

from __future__ import annotations

import functools
import platform
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from gateway import __version__
from gateway.error_code import ErrorCode
from gateway.observability.log_writer import dropped_lines
from gateway.pbx.errnos import errno_meaning

if TYPE_CHECKING:
    from gateway.http_guard import ConnectionGuard


class ResponseCacheFigures(Protocol):
    """What the response cache shows /metrics (gateway.schema.response_cache.ResponseCache):
    a protocol, so observability needs nothing from the schema layer above it."""

    @property
    def bytes_held(self) -> int: ...
    @property
    def entries(self) -> int: ...
    @property
    def evictions(self) -> int: ...
    @property
    def too_large(self) -> int: ...


MAX_OPERATION_NAMES: Final = 100
_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_PBX_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The gateway's metrics; ``create_app`` makes one and hands out its recorders."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._operations: set[str] = set()
        self._series: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        # gateway_build_info{version, python} 1: which release each replica runs, the usual
        # way to join it onto the other series.
        Info(
            "gateway_build", "The gateway's release and Python version.", registry=self.registry
        ).info({"version": __version__, "python": platform.python_version()})
        self.requests = Counter(
            "gateway_graphql_requests",
            "GraphQL requests by operation name and outcome (ok, error, partial, stale).",
            ["operation", "outcome"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "gateway_graphql_request_duration_seconds",
            "Time to execute a GraphQL operation.",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "gateway_graphql_errors",
            "GraphQL errors by extensions.code.",
            ["code"],
            registry=self.registry,
        )
        self.pbx_calls = Counter(
            "gateway_pbx_calls",
            "Calls that reached the PBX, by endpoint, outcome and errno.",
            ["endpoint", "outcome", "errno"],
            registry=self.registry,
        )
        self.pbx_seconds = Histogram(
            "gateway_pbx_call_duration_seconds",
            "Time the PBX took to answer a call.",
            ["endpoint"],
            buckets=_PBX_BUCKETS,
            registry=self.registry,
        )
        self.response_cache_hits = Counter(
            "gateway_response_cache_hits",
            "Requests answered from the response cache (no execution, no store lookup).",
            registry=self.registry,
        )
        self.rejections = Counter(
            "gateway_http_rejections",
            "Requests refused before GraphQL ran, by code (UNAUTHENTICATED, RATE_LIMITED, ...).",
            ["code"],
            registry=self.registry,
        )

        self.registry.register(_LogCollector())

    def operation_label(self, name: str | None) -> str:
        """A bounded label for a client-chosen operation name."""
        if not name:
            return "anonymous"
        if not _NAME.match(name):
            return "other"
        if name in self._operations:
            return name
        if len(self._operations) >= MAX_OPERATION_NAMES:
            return "other"
        self._operations.add(name)
        return name

    def request_series(self, operation: str | None, outcome: str) -> tuple[Counter, Histogram]:
        """The request counter's and latency histogram's series for ``operation`` and
        ``outcome``, kept once made: ``labels()`` costs a few microseconds, a tenth of a
        cached answer. Bounded like the labels: operation labels times outcomes."""
        label = self.operation_label(operation)
        series = self._series.get((label, outcome))
        if series is None:
            series = (self.requests.labels(label, outcome), self.request_seconds.labels(label))
            self._series[(label, outcome)] = series
        return series

    def observe_pbx_call(
        self, endpoint: str, outcome: str, errno: str | None, seconds: float
    ) -> None:
        """The PbxClient's observer hook."""
        known = errno is not None and not errno_meaning(errno).startswith("undocumented")
        label = "" if errno is None else errno if known else "other"
        self.pbx_calls.labels(endpoint, outcome, label).inc()
        self.pbx_seconds.labels(endpoint).observe(seconds)

    def watch(self, collector: Collector) -> Callable[[], None]:
        """Read ``collector`` at every scrape, until the returned function is called (the
        app's lifespan registers the runtime's collector with the objects it reads)."""
        self.registry.register(collector)
        return functools.partial(self.registry.unregister, collector)

    def watch_response_cache(self, cache: ResponseCacheFigures) -> None:
        """Report the response cache's memory at every scrape."""
        self.registry.register(_ResponseCacheCollector(cache))

    def watch_connections(self, guard: ConnectionGuard) -> None:
        """Report the HTTP server's connections and refusals at every scrape."""
        self.registry.register(_ConnectionCollector(guard))

    async def endpoint(self, request: Request) -> Response:
        """``GET /metrics``."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE)


class _ConnectionCollector(Collector):
    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "gateway_http_connections", "HTTP connections open now.", self._guard.open
        )
        yield GaugeMetricFamily(
            "gateway_websocket_connections",
            "Of the connections open now, those upgraded to a WebSocket (subscriptions).",
            self._guard.websockets,
        )
        refused = CounterMetricFamily(
            "gateway_http_connections_refused",
            "Connections refused by the HTTP limits, by code.",
            labels=["code"],
        )
        for code in (ErrorCode.HEADERS_TOO_LARGE, ErrorCode.REQUEST_TIMEOUT, ErrorCode.SERVER_BUSY):
            refused.add_metric([code], self._guard.refused[code])
        yield refused


class _ResponseCacheCollector(Collector):
    def __init__(self, cache: ResponseCacheFigures) -> None:
        self._cache = cache

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        cache = self._cache
        yield GaugeMetricFamily(
            "gateway_response_cache_bytes",
            "Bytes the kept answers count for (at most GATEWAY_RESPONSE_CACHE_BYTES).",
            cache.bytes_held,
        )
        yield GaugeMetricFamily("gateway_response_cache_entries", "Answers kept.", cache.entries)
        yield CounterMetricFamily(
            "gateway_response_cache_evictions",
            "Answers dropped, least recently used first, to make room for another.",
            cache.evictions,
        )
        yield CounterMetricFamily(
            "gateway_response_cache_too_large",
            "Answers not kept: larger than an eighth of the budget.",
            cache.too_large,
        )


class _LogCollector(Collector):
    """Log lines the writer thread dropped because its queue was full (process-wide)."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "gateway_log_lines_dropped",
            "Log lines dropped because the log stream could not keep up (queue full).",
            dropped_lines(),
        )
