"""OpenTelemetry: one span per operation, one per PBX call, the caller's trace continued."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.gateway_stack import StackFactory

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"

_EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans recorded in memory (the global provider can be set once per process)."""
    trace.set_tracer_provider(_PROVIDER)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


async def test_tracing_spans_operation_and_pbx_calls_not_fields(
    gateway_stack: StackFactory, spans: InMemorySpanExporter
) -> None:
    """A query under a caller's traceparent: an operation span in that trace, a span for its
    PBX call beneath it, and no span per field."""
    stack = await gateway_stack()
    spans.clear()  # the start-up login's span
    document = (
        'query Wall { a: conference(number: "6400") { name } '
        'b: conference(number: "6401") { name } }'
    )
    await stack.graphql(document, headers={"traceparent": PARENT})
    names = [span.name for span in spans.get_finished_spans()]
    assert names.count("GraphQL Wall") == 1
    assert names.count("PBX conference/query") == 1
    assert len(names) == 2  # nothing per field
    operation = next(s for s in spans.get_finished_spans() if s.name == "GraphQL Wall")
    pbx = next(s for s in spans.get_finished_spans() if s.name.startswith("PBX"))
    assert f"{operation.context.trace_id:032x}" == TRACE_ID
    assert pbx.context.trace_id == operation.context.trace_id
    assert pbx.parent is not None and pbx.parent.span_id == operation.context.span_id
    for span in spans.get_finished_spans():
        assert "token" not in str(span.attributes)
