"""The GraphQL schema: types, the root operations, the per-request context, policies.

``build_schema()`` assembles it; ``schema.graphql`` at the repository root is its
printed form, kept equal to this code by a test (``pbx-gateway export-schema``). Each
policy is one extension in the list below.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxTokensLimiter,
    SchemaExtension,
)
from strawberry.schema.config import BatchingConfig, StrawberryConfig
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from gateway.schema.document_budget import CostLimits
from gateway.schema.document_cache import DocumentCacheFactory
from gateway.schema.error_codes import ErrorCodes
from gateway.schema.mutation import Mutation
from gateway.schema.operation_span import OperationSpan
from gateway.schema.query import Query
from gateway.schema.request_recorder import RequestRecorder
from gateway.schema.response_cache import ResponseCache, response_caching
from gateway.schema.shared_updates import executor_class
from gateway.schema.stale_marks import StaleMarks
from gateway.schema.subscription import Subscription
from gateway.security.config import SecuritySettings


class GatewaySchema(strawberry.Schema):
    """strawberry's schema, minus its habit of logging every error with a traceback, and
    never running a subscription as a single answer.

    Errors the gateway raises on purpose (bad input, the PBX being down) are answers, not
    incidents; :class:`ErrorCodes` logs the unexpected ones, once, with the request id.
    """

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        return None

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        # A subscription streams (``subscribe``/``stream``: WebSocket, multipart HTTP);
        # executed for one answer, graphql-core would fail on the stream it returns. So it
        # is refused as an operation type this request cannot carry (the view says how).
        given = OperationType if allowed_operation_types is None else allowed_operation_types
        allowed = set(given) - {OperationType.SUBSCRIPTION}
        return await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed,
            operation_extensions,
        )


def build_schema(
    security: SecuritySettings | None = None,
    answers: ResponseCache | None = None,
    *,
    share_live_updates: bool = True,
) -> strawberry.Schema:
    """The gateway's schema with its extensions, one policy each; ``answers`` is the
    response cache, shared with the HTTP view's fast path; ``share_live_updates``: a
    ``conferenceSessions`` update is executed once per selection, not per subscriber
    (:mod:`gateway.schema.shared_updates`)."""
    limits = security or SecuritySettings(introspection=True)
    # Validation rules are built once: a rule class made per request would cost time, and
    # the document cache (which skips validation for texts it has seen) relies on it too.
    # Depth, aliases, fields and spreads are not rules: the document cache measures them in
    # one pass and refuses before any rule runs (gateway.schema.document_budget).
    rules = [*(DisableIntrospection().validation_rules if not limits.introspection else [])]
    # Classes or factories: strawberry makes a fresh instance per operation.
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        ErrorCodes,
        StaleMarks,
        RequestRecorder,
        OperationSpan,
        DocumentCacheFactory(cost_limits(limits)),
        response_caching(answers or ResponseCache()),
        functools.partial(AddValidationRules, rules),
        functools.partial(MaxTokensLimiter, max_token_count=limits.max_tokens),
    ]
    batching = BatchingConfig(max_operations=limits.max_batch) if limits.batching else None
    return GatewaySchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        config=StrawberryConfig(batching_config=batching),
        execution_context_class=executor_class(share_live_updates),
    )


def cost_limits(security: SecuritySettings) -> CostLimits:
    """The document budget's limits, from the security settings."""
    return CostLimits(
        max_selections=security.max_selections,
        max_spreads=security.max_spreads,
        max_depth=security.max_depth,
        max_aliases=security.max_aliases,
    )
