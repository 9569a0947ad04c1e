"""OpenTelemetry spans (the optional ``otel`` extra): one per GraphQL operation, one per
PBX call, and W3C trace context taken from the caller's ``traceparent``.

No span per field: on a list of rooms that would cost several times the execution
itself. Without the extra installed, or with no tracer provider configured by the
operator (``OTEL_*`` variables read by the SDK, or ``opentelemetry-instrument``), every
function here is a no-op.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from graphql import get_operation_ast
from strawberry.extensions import SchemaExtension

try:
    from opentelemetry import propagate, trace
except ImportError:  # pragma: no cover - depends on the installed extras
    propagate = None  # type: ignore[assignment]
    trace = None  # type: ignore[assignment]

_NAME = "pbx-gateway"


@contextlib.contextmanager
def pbx_call_span(endpoint: str) -> Iterator[None]:
    """A client span around one call to the PBX (never holding the token or the body)."""
    if trace is None:
        yield
        return
    with trace.get_tracer(_NAME).start_as_current_span(
        f"PBX {endpoint}", kind=trace.SpanKind.CLIENT, attributes={"pbx.endpoint": endpoint}
    ):
        yield


class OperationSpan(SchemaExtension):
    """A server span per GraphQL operation, child of the caller's ``traceparent``."""

    def on_operation(self) -> Iterator[None]:
        if trace is None or propagate is None:
            yield
            return
        request = getattr(self.execution_context.context, "request", None)
        headers: Mapping[str, Any] = getattr(request, "headers", {}) or {}
        parent = propagate.extract(dict(headers))
        with trace.get_tracer(_NAME).start_as_current_span(
            "GraphQL", context=parent, kind=trace.SpanKind.SERVER
        ) as span:
            yield
            name = operation_name(self.execution_context) or "anonymous"
            span.update_name(f"GraphQL {name}")  # known only once the document is parsed
            span.set_attribute("graphql.operation.name", name)
            errors = getattr(self.execution_context.result, "errors", None) or []
            span.set_attribute("graphql.errors", len(errors))


def operation_name(execution_context: Any) -> str | None:
    """The operation's name: as the request gave it, else as the document names it."""
    name: str | None = execution_context.operation_name
    document = execution_context.graphql_document
    if name or document is None:
        return name
    operation = get_operation_ast(document)
    return operation.name.value if operation is not None and operation.name else None
