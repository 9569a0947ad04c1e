"""The GraphQL schema: types, the root query, the per-request context and its policies.

``build_schema()`` assembles it; ``schema.graphql`` at the repository root is its
printed form, kept equal to this code by a test (``pbx-gateway export-schema``).
"""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.types import ExecutionContext

from gateway.schema.error_codes import ErrorCodes
from gateway.schema.query import Query
from gateway.schema.stale_marks import StaleMarks


class GatewaySchema(strawberry.Schema):
    """strawberry's schema, minus its habit of logging every error with a traceback.

    Errors the gateway raises on purpose (bad input, the PBX being down) are answers, not
    incidents; :class:`ErrorCodes` logs the unexpected ones, once, with the request id.
    """

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        return None


def build_schema(**options: Any) -> strawberry.Schema:
    """The gateway's schema with its extensions, one policy each."""
    return GatewaySchema(query=Query, extensions=[ErrorCodes, StaleMarks], **options)
