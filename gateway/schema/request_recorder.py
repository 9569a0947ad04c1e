"""Every executed GraphQL operation, recorded: its log line and its metrics.

A strawberry extension: it times the operation and, when it ends, hands
:func:`gateway.observability.request_log.record` the request id, operation name,
duration, PBX fetches the request started, the cache outcome (``hit``, ``miss``,
``stale``, ``response``), the client identity's name and the error codes, all read from
the request's typed :class:`GatewayContext`. (The view's response-cache fast path, which
executes nothing, records its own line.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from strawberry.extensions import SchemaExtension

from gateway.observability.request_log import record
from gateway.schema.context import gateway_context


class RequestRecorder(SchemaExtension):
    """Logs and measures each operation (see the module docstring)."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        seconds = time.perf_counter() - started
        context = gateway_context(self.execution_context.context)
        result = self.execution_context.result
        errors = (result.errors if result is not None else None) or []
        codes = [str((e.extensions or {}).get("code", "UNKNOWN")) for e in errors]
        stale = context is not None and bool(context.stale)
        data = result.data if result is not None else None
        answered = isinstance(data, dict) and any(value is not None for value in data.values())
        outcome = "ok" if not codes else "partial" if answered else "error"
        if stale and not codes:
            outcome = "stale"
        fetches = context.fetches_started if context is not None else 0
        cached = context is not None and context.response_cached
        record(
            context.metrics if context is not None else None,
            request_id=context.request_id if context is not None else None,
            operation=self.execution_context.operation_name,
            outcome=outcome,
            seconds=seconds,
            pbx_fetches=fetches,
            cache="stale" if stale else "miss" if fetches else "response" if cached else "hit",
            client=context.identity.name if context is not None else None,
            codes=codes,
        )
