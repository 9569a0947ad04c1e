"""GraphQL over HTTP (the 2024+ draft): what a request must be, and the coded refusals.

Everything here is decided from the HTTP request alone or from the shape of a GraphQL
answer, never from the schema:

- before any GraphQL work (:func:`refuse_before_graphql`): a method other than GET or
  POST is 405 (``Allow: GET, POST``), an ``Accept`` naming no JSON type the view writes is
  406, a POST body that is not ``application/json`` is 415;
- a batch's shape (:func:`check_batch`): batching on, not too long, every item an object
  whose members have the types a single request's have;
- what strawberry refused (:func:`refusal_for`): a mutation over GET is 405 with
  ``Allow: POST``, an operation that cannot be chosen is a GraphQL request error, the
  rest a 400 with a code;
- a GraphQL request error (nothing executed: :func:`is_request_error`) carries no
  ``data`` entry, and an error without a code becomes ``INTERNAL_ERROR`` (:func:`coded`).

Every refusal is a GraphQL error answer, ``{"errors": [{"message", "extensions":
{"code"}}]}``, in the media type ``Accept`` chose, and never cached.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from cross_web import HTTPException  # what strawberry's views raise
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from strawberry.schema.config import BatchingConfig
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from gateway import http_caching
from gateway.error_code import ErrorCode
from gateway.media_types import GRAPHQL_RESPONSE_JSON, JSON, content_type, is_json_request
from gateway.schema.context import GatewayContext

HTTP_CODES: Final[dict[int, ErrorCode]] = {
    400: ErrorCode.BAD_REQUEST,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    406: ErrorCode.NOT_ACCEPTABLE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
}
_EXCHANGE: Final = "graphql_exchange"
_BATCH_ITEM_TYPES: Final[dict[str, type | tuple[type, ...]]] = {
    "query": str,
    "operationName": str,
    "variables": dict,
    "extensions": dict,
}
_BATCH_ITEM_NAMES: Final = {
    "query": "a string",
    "operationName": "a string",
    "variables": "an object",
    "extensions": "an object",
}

logger = logging.getLogger("gateway.graphql_view")  # the logger these lines always had


@dataclass
class Exchange:
    """What handling one HTTP request learns on the way (kept in ``scope["state"]``)."""

    media_type: str
    context: GatewayContext | None = None
    batch: bool = False
    results: list[ExecutionResult] = field(default_factory=list)
    to_remember: dict[str, str] = field(default_factory=dict)
    """APQ documents (by hash) to keep once they have validated."""
    streaming: bool = False
    """A multipart subscription: its results are streamed, never kept here."""

    @classmethod
    def start(cls, request: Request, media_type: str | None) -> Exchange:
        """The exchange of ``request``, kept in its state for strawberry's hooks."""
        exchange = cls(media_type or JSON)
        request.scope.setdefault("state", {})[_EXCHANGE] = exchange
        return exchange


def exchange_of(request: HTTPConnection) -> Exchange | None:
    """The request's :class:`Exchange`, or None (a request the view did not start)."""
    exchange = request.scope.get("state", {}).get(_EXCHANGE)
    return exchange if isinstance(exchange, Exchange) else None


class CodedRefusal(HTTPException):
    """A 400 refusal that names its own ``extensions.code``."""

    def __init__(self, reason: str, code: ErrorCode) -> None:
        super().__init__(400, reason)
        self.code = code


def refusal(
    exchange: Exchange, status: int, code: ErrorCode, message: str, *, allow: str | None = None
) -> Response:
    """A GraphQL error answer made before or instead of execution: no ``data`` entry."""
    body = {"errors": [{"message": message, "extensions": {"code": code}}]}
    response = Response(
        orjson.dumps(body), status_code=status, media_type=content_type(exchange.media_type)
    )
    if allow is not None:
        response.headers["allow"] = allow
    return http_caching.uncacheable(response)


def refuse_method(request: Request, exchange: Exchange) -> Response | None:
    """405 for a method GraphQL is not served over, else None."""
    if request.method in ("GET", "POST"):
        return None
    message = "GraphQL is served here over GET (queries only) and POST"
    return refusal(exchange, 405, ErrorCode.METHOD_NOT_ALLOWED, message, allow="GET, POST")


def refuse_media_types(request: Request, acceptable: bool, exchange: Exchange) -> Response | None:
    """406 when ``Accept`` named no type the view writes, 415 for a POST body that is not
    JSON; else None."""
    if not acceptable:
        message = (
            "the Accept header names no type this server writes: accept "
            "application/graphql-response+json or application/json"
        )
        return refusal(exchange, 406, ErrorCode.NOT_ACCEPTABLE, message)
    if request.method == "POST" and not is_json_request(request.headers.get("content-type")):
        message = "send the POST body as JSON, with 'Content-Type: application/json'"
        return refusal(exchange, 415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, message)
    return None


def refusal_for(request: Request, exchange: Exchange, exc: HTTPException) -> Response:
    """The coded answer to what strawberry (or a check of ours) refused."""
    cause = exc.__cause__
    if (
        isinstance(cause, InvalidOperationTypeError)
        and cause.operation_type is OperationType.SUBSCRIPTION
    ):
        message = (
            "a subscription streams its updates and cannot be answered as one JSON "
            "document: subscribe over a streaming transport"
        )
        return refusal(exchange, 400, ErrorCode.BAD_REQUEST, message)
    if isinstance(cause, InvalidOperationTypeError) and request.method == "GET":
        kind = cause.operation_type.value
        message = f"a {kind} cannot be sent with GET (it is not a safe method): use POST"
        return refusal(exchange, 405, ErrorCode.METHOD_NOT_ALLOWED, message, allow="POST")
    if isinstance(cause, CannotGetOperationTypeError):
        # GetOperation() failing is a GraphQL request error, not a malformed request.
        status = 400 if exchange.media_type == GRAPHQL_RESPONSE_JSON else 200
        return refusal(exchange, status, ErrorCode.OPERATION_RESOLUTION_FAILURE, exc.reason)
    code = HTTP_CODES.get(exc.status_code, ErrorCode.BAD_REQUEST)
    if isinstance(exc, CodedRefusal):
        code = exc.code
    return refusal(exchange, exc.status_code, code, exc.reason)


def check_batch_size(request_data: Sequence[object], batching: BatchingConfig | None) -> None:
    """Refuse a batch when batching is off or it holds too many operations, saying which
    setting decides it (strawberry's own words name neither)."""
    if batching is None:
        message = "batching is off here (GATEWAY_BATCHING): send one operation per request"
        raise CodedRefusal(message, ErrorCode.BAD_USER_INPUT)
    if len(request_data) > batching["max_operations"]:
        raise CodedRefusal(
            f"this batch holds {len(request_data)} operations; at most "
            f"{batching['max_operations']} are allowed (GATEWAY_MAX_BATCH)",
            ErrorCode.OPERATION_TOO_LARGE,
        )


def check_batch_items(request_data: Sequence[object]) -> None:
    """Every item a JSON object, and each gets the checks strawberry makes only for a
    single request (it reads each item with ``.get()``)."""
    if not all(isinstance(item, dict) for item in request_data):
        raise CodedRefusal(
            "every operation of a batch must be a JSON object", ErrorCode.BAD_USER_INPUT
        )
    for index, item in enumerate(request_data):
        data: Any = item
        for name, kinds in _BATCH_ITEM_TYPES.items():
            value = data.get(name)
            if value is not None and not isinstance(value, kinds):
                raise CodedRefusal(
                    f"operation {index} of the batch: `{name}` must be "
                    f"{_BATCH_ITEM_NAMES[name]} or null",
                    ErrorCode.BAD_USER_INPUT,
                )


def coded(error: Any, request_id: str | None) -> Any:
    """The error, or, when it has no ``extensions.code``, INTERNAL_ERROR naming the request.

    ErrorCodes codes every error it sees; one raised by a validation rule itself (a bug in
    a limiter, say) ends the operation before ErrorCodes can, so this is the last net.
    """
    if not isinstance(error, dict) or (error.get("extensions") or {}).get("code"):
        return error
    logger.error("uncoded GraphQL error in request %s: %s", request_id, error.get("message"))
    return {
        "message": f"Internal error; quote request id {request_id} to the gateway's operator.",
        "extensions": {"code": ErrorCode.INTERNAL_ERROR, "requestId": request_id},
    }


def is_request_error(result: ExecutionResult) -> bool:
    """Whether ``result`` failed before execution (parse, validation, variable coercion):
    no data and no error tied to a field path."""
    return (
        result.data is None
        and bool(result.errors)
        and all(error.path is None for error in result.errors or ())
    )


def codes(result: ExecutionResult) -> set[str]:
    """The errors' codes; ``""`` for an error without one (a bug: see :func:`coded`)."""
    return {str((error.extensions or {}).get("code") or "") for error in result.errors or ()}
