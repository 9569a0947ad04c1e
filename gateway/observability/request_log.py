"""One structured log line and the metrics for every GraphQL operation.

:func:`record` takes the request id, operation name, duration, PBX fetches the request
started, the cache outcome (``hit``, ``miss``, ``stale``, ``response``), the client
identity's name and the error codes, and writes them both as a JSON log line (logger
``gateway.request``) and as Prometheus metrics. Nothing secret is in either: no
variables, no PINs, no tokens. Its callers: the schema's extension
(:mod:`gateway.schema.request_recorder`) for every executed operation, and the view's
response-cache fast path.
"""

from __future__ import annotations

import logging
import uuid

from gateway.observability.metrics import Metrics

logger = logging.getLogger("gateway.request")


def record(
    metrics: Metrics | None,
    *,
    request_id: str | None,
    operation: str | None,
    outcome: str,
    seconds: float,
    pbx_fetches: int,
    cache: str,
    client: str | None,
    codes: list[str],
) -> None:
    """The metrics and the log line of one GraphQL request (executed or not)."""
    if metrics is not None:
        label = metrics.operation_label(operation)
        metrics.requests.labels(label, outcome).inc()
        metrics.request_seconds.labels(label).observe(seconds)
        for code in codes:
            metrics.errors.labels(code).inc()
        if cache == "response":
            metrics.response_cache_hits.inc()
    if not logger.isEnabledFor(logging.INFO):
        return  # building the line costs more than the rest of a cached answer
    logger.info(
        "graphql %s %s",
        operation or "anonymous",
        outcome,
        extra={
            "fields": {
                "request_id": request_id or uuid.uuid4().hex[:16],
                "operation": operation,
                "outcome": outcome,
                "duration_ms": round(seconds * 1000, 2),
                "pbx_fetches": pbx_fetches,
                "cache": cache,
                "client": client,
                "error_codes": codes,
            }
        },
    )
