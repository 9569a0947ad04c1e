"""Adds ``extensions.stale`` to a response that served any last-known data.

See :mod:`gateway.staleness` for the shape; a frontend shows "last updated ..." from it.
"""

from __future__ import annotations

from typing import Any

from strawberry.extensions import SchemaExtension

from gateway.staleness import StaleReport


class StaleMarks(SchemaExtension):
    """Reports the request's stale answers in the response's ``extensions``."""

    def get_results(self) -> dict[str, Any]:
        report = getattr(self.execution_context.context, "stale", None)
        if isinstance(report, StaleReport) and report:
            return {"stale": report.as_json()}
        return {}
