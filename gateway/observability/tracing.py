"""OpenTelemetry spans (the optional ``otel`` extra): one per PBX call here; the one per
GraphQL operation, child of the caller's ``traceparent``, is the schema's extension
(:mod:`gateway.schema.operation_span`), which reads the request from the typed context.

No span per field: on a list of rooms that would cost several times the execution
itself. Without the extra installed, or with no tracer provider configured by the
operator (``OTEL_*`` variables read by the SDK, or ``opentelemetry-instrument``), every
function here is a no-op.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

try:
    from opentelemetry import propagate, trace
except ImportError:  # pragma: no cover - depends on the installed extras
    propagate = None  # type: ignore[assignment]
    trace = None  # type: ignore[assignment]

TRACER_NAME = "pbx-gateway"


@contextlib.contextmanager
def pbx_call_span(endpoint: str) -> Iterator[None]:
    """A client span around one call to the PBX (never holding the token or the body)."""
    if trace is None:
        yield
        return
    with trace.get_tracer(TRACER_NAME).start_as_current_span(
        f"PBX {endpoint}", kind=trace.SpanKind.CLIENT, attributes={"pbx.endpoint": endpoint}
    ):
        yield
