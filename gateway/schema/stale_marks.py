"""Adds ``extensions.stale`` to a response that served any last-known data.

See :mod:`gateway.staleness` for the shape; a frontend shows "last updated ..." from it.
"""

from __future__ import annotations

from typing import Any

from strawberry.extensions import SchemaExtension

from gateway.schema.context import gateway_context


class StaleMarks(SchemaExtension):
    """Reports the request's stale answers in the response's ``extensions``."""

    def get_results(self) -> dict[str, Any]:
        context = gateway_context(self.execution_context.context)
        if context is not None and context.stale:
            return {"stale": context.stale.as_json()}
        return {}
