"""One structured log line and the metrics for every GraphQL operation.

A strawberry extension: it times the operation and, when it ends, records the request
id, operation name, duration, PBX fetches the request started, the cache outcome
(``hit``, ``miss``, ``stale``), the client identity's name and the error codes, both as a
JSON log line (logger ``gateway.request``) and as Prometheus metrics. Nothing secret is
in either: no variables, no PINs, no tokens.

The line is one per request, so its cost matters: under ``serve``'s logging it is
formatted with orjson and queued for the writer thread (``logs.direct_writer``), a few
microseconds; the fallback through ``logging`` serves every other set-up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from random import getrandbits
from typing import Any

from strawberry.extensions import SchemaExtension

from gateway.observability.log_writer import iso_time, json_line
from gateway.observability.logs import direct_writer
from gateway.observability.metrics import Metrics

logger = logging.getLogger("gateway.request")


class RequestRecorder(SchemaExtension):
    """Logs and measures each operation (see the module docstring)."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        seconds = time.perf_counter() - started
        context: Any = self.execution_context.context
        result = self.execution_context.result
        errors = getattr(result, "errors", None) or []
        codes = [str((e.extensions or {}).get("code", "UNKNOWN")) for e in errors]
        stale = bool(getattr(context, "stale", None))
        data = getattr(result, "data", None)
        answered = isinstance(data, dict) and any(value is not None for value in data.values())
        outcome = "ok" if not codes else "partial" if answered else "error"
        if stale and not codes:
            outcome = "stale"
        fetches = getattr(context, "fetches_started", 0)
        cached = getattr(context, "response_cached", False)
        record(
            getattr(context, "metrics", None),
            request_id=getattr(context, "request_id", None),
            operation=self.execution_context.operation_name,
            outcome=outcome,
            seconds=seconds,
            pbx_fetches=fetches,
            cache="stale" if stale else "miss" if fetches else "response" if cached else "hit",
            client=getattr(getattr(context, "identity", None), "name", None),
            codes=codes,
        )


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
    request_id = request_id or f"{getrandbits(64):016x}"  # uuid4 costs 7 µs
    message = f"graphql {operation or 'anonymous'} {outcome}"
    duration_ms = round(seconds * 1000, 2)
    writer = direct_writer(logger)
    if writer is not None:
        # serve's set-up (the JSON handler alone): the finished line goes straight to the
        # writer thread; no LogRecord, no handler lock, no write on the event loop. The
        # keys and their order are JsonFormatter's.
        writer.submit(
            json_line(
                {
                    "time": iso_time(time.time()),
                    "level": "info",
                    "logger": logger.name,
                    "message": message,
                    "request_id": request_id,
                    "operation": operation,
                    "outcome": outcome,
                    "duration_ms": duration_ms,
                    "pbx_fetches": pbx_fetches,
                    "cache": cache,
                    "client": client,
                    "error_codes": codes,
                }
            )
        )
        return
    fields = {
        "request_id": request_id,
        "operation": operation,
        "outcome": outcome,
        "duration_ms": duration_ms,
        "pbx_fetches": pbx_fetches,
        "cache": cache,
        "client": client,
        "error_codes": codes,
    }
    logger.info(message, extra={"fields": fields})
