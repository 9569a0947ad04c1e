"""GraphQL errors get a stable ``extensions.code``; unexpected ones are masked.

The gateway's own errors (:mod:`gateway.errors`) carry their code already (graphql-core
copies an original error's ``extensions``). This extension gives the rest a code too:
syntax and validation errors from graphql-core, and any other exception, which is a bug:
it is logged with the request id and replaced by ``INTERNAL_ERROR`` naming that id, so no
stack trace, path or upstream detail reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from gateway.error_code import ErrorCode
from gateway.errors import GatewayError
from gateway.schema.context import gateway_context

logger = logging.getLogger(__name__)


class ErrorCodes(SchemaExtension):
    """Adds ``extensions.code`` to every error and masks unexpected exceptions."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            result.errors = [self._coded(error) for error in result.errors]

    def _coded(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if isinstance(original, GatewayError) or (error.extensions or {}).get("code"):
            return error
        if original is None or isinstance(original, GraphQLError):  # graphql-core's own
            error.extensions = {**(error.extensions or {}), "code": graphql_core_code(error)}
            return error
        context = gateway_context(self.execution_context.context)
        request_id = context.request_id if context is not None else "unknown"
        logger.error(
            "unexpected error in request %s at %s",
            request_id,
            error.path,
            exc_info=(type(original), original, original.__traceback__),
        )
        return GraphQLError(
            f"Internal error; quote request id {request_id} to the gateway's operator.",
            nodes=error.nodes,
            path=error.path,
            extensions={"code": ErrorCode.INTERNAL_ERROR, "requestId": request_id},
        )


def graphql_core_code(error: GraphQLError) -> ErrorCode:
    """The code of an error graphql-core raised itself (a syntax or validation error, or
    variables that do not coerce). Size limits are refused with their code already, by
    type (gateway.schema.document_budget: graphql-core's token limit included)."""
    if error.message.startswith("Syntax Error"):
        return ErrorCode.GRAPHQL_PARSE_FAILED
    if error.message.startswith("Variable "):
        return ErrorCode.BAD_USER_INPUT
    return ErrorCode.GRAPHQL_VALIDATION_FAILED
