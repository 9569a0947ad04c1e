"""The GraphQL schema: types, the root query, the per-request context and its policies.

``build_schema()`` assembles it; ``schema.graphql`` at the repository root is its
printed form, kept equal to this code by a test (``pbx-gateway export-schema``).
"""

from __future__ import annotations

import strawberry

from gateway.schema.error_codes import ErrorCodes
from gateway.schema.query import Query
from gateway.schema.stale_marks import StaleMarks


def build_schema() -> strawberry.Schema:
    """The gateway's schema with its extensions, one policy each."""
    return strawberry.Schema(query=Query, extensions=[ErrorCodes, StaleMarks])
