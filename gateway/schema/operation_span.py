"""A server span per GraphQL operation (the ``otel`` extra), child of the caller's W3C
``traceparent``; the PBX calls it causes get theirs from :mod:`gateway.observability.tracing`.

A schema extension, so it lives with the schema and reads the request from the typed
:class:`~gateway.schema.context.GatewayContext`. Without the extra, or with no tracer
provider configured, it does nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import get_operation_ast
from strawberry.extensions import SchemaExtension

from gateway.observability.tracing import TRACER_NAME
from gateway.schema.context import gateway_context

try:
    from opentelemetry import propagate, trace
except ImportError:  # pragma: no cover - depends on the installed extras
    propagate = None  # type: ignore[assignment]
    trace = None  # type: ignore[assignment]


class OperationSpan(SchemaExtension):
    """A server span per GraphQL operation, child of the caller's ``traceparent``."""

    def on_operation(self) -> Iterator[None]:
        if trace is None or propagate is None:
            yield
            return
        context = gateway_context(self.execution_context.context)
        request = context.request if context is not None else None
        headers = dict(request.headers) if request is not None else {}
        parent = propagate.extract(headers)
        with trace.get_tracer(TRACER_NAME).start_as_current_span(
            "GraphQL", context=parent, kind=trace.SpanKind.SERVER
        ) as span:
            yield
            name = operation_name(self.execution_context) or "anonymous"
            span.update_name(f"GraphQL {name}")  # known only once the document is parsed
            span.set_attribute("graphql.operation.name", name)
            result = self.execution_context.result
            errors = (result.errors if result is not None else None) or []
            span.set_attribute("graphql.errors", len(errors))


def operation_name(execution_context: Any) -> str | None:
    """The operation's name: as the request gave it, else as the document names it."""
    name: str | None = execution_context.operation_name
    document = execution_context.graphql_document
    if name or document is None:
        return name
    operation = get_operation_ast(document)
    return operation.name.value if operation is not None and operation.name else None
