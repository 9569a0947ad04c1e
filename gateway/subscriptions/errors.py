"""The coded errors of subscription streams.

strawberry writes a streamed result's errors as graphql-core formats them; the gateway's
rule is that every error a client sees has an ``extensions.code`` and no internals. So
each error of a streamed result goes through :func:`coded_errors`: the gateway's own
errors keep their code, graphql-core's get the code the HTTP view gives them, a slow
consumer becomes ``SLOW_CONSUMER``, and anything else is masked as ``INTERNAL_ERROR``
naming the request id (logged, with its traceback, here).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from graphql import GraphQLError
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import InvalidOperationTypeError

from gateway.error_code import ErrorCode
from gateway.errors import GatewayError
from gateway.live.feed import SlowConsumer
from gateway.schema.error_codes import graphql_core_code

logger = logging.getLogger("gateway.subscriptions")

SLOW_CONSUMER_MESSAGE = (
    "this subscription fell too far behind its updates (GATEWAY_LIVE_BUFFER) and was "
    "ended; subscribe again for the current state"
)


NOT_A_SUBSCRIPTION_MESSAGE = (
    "this stream carries subscriptions only; send a query or mutation for one JSON answer "
    "(Accept: application/json)"
)


def coded(message: str, code: ErrorCode) -> dict[str, Any]:
    """A formatted GraphQL error with ``code``."""
    return {"message": message, "extensions": {"code": code}}


def is_slow_consumer(errors: Sequence[GraphQLError] | None) -> bool:
    """Whether a streamed result is the end of a subscriber that fell behind."""
    return any(isinstance(error.original_error, SlowConsumer) for error in errors or ())


def coded_errors(errors: Sequence[GraphQLError], request_id: str) -> list[dict[str, Any]]:
    """``errors`` formatted, each with an ``extensions.code`` (see the module docstring)."""
    return [_coded(error, request_id) for error in errors]


def _coded(error: GraphQLError, request_id: str) -> dict[str, Any]:
    original = error.original_error
    if isinstance(original, SlowConsumer):
        return coded(SLOW_CONSUMER_MESSAGE, ErrorCode.SLOW_CONSUMER)
    if isinstance(original, InvalidOperationTypeError):  # a query or mutation asked to stream
        return coded(NOT_A_SUBSCRIPTION_MESSAGE, ErrorCode.BAD_REQUEST)
    if isinstance(original, MissingQueryError):
        return coded(
            "the request has no query: send the subscription's document", ErrorCode.BAD_REQUEST
        )
    formatted: dict[str, Any] = dict(error.formatted)
    extensions = formatted.get("extensions") or {}
    if isinstance(original, GatewayError) or extensions.get("code"):
        return formatted
    if original is None or isinstance(original, GraphQLError):
        formatted["extensions"] = {**extensions, "code": graphql_core_code(error)}
        return formatted
    logger.error(
        "unexpected error in subscription %s at %s",
        request_id,
        error.path,
        exc_info=(type(original), original, original.__traceback__),
    )
    return {
        "message": f"Internal error; quote request id {request_id} to the gateway's operator.",
        "path": error.path,
        "extensions": {"code": ErrorCode.INTERNAL_ERROR, "requestId": request_id},
    }
