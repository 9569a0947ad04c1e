"""The GraphQL HTTP view: strawberry's ASGI app, adapted to the gateway and to the GraphQL
over HTTP specification (the 2024+ draft).

One request, in order:

1. Refusals before any GraphQL work, each a coded GraphQL error: a method other than GET
   or POST (405, ``Allow: GET, POST``), an ``Accept`` naming no JSON type this view
   writes (406), a POST body that is not ``application/json`` in UTF-8 (415).
2. A fresh :class:`GatewayContext` (and so a fresh DataLoader), from the runtime and the
   identity the security gate established.
3. ``operationName`` checked (a string; ``""`` means none, as the spec says for GET), and
   persisted queries resolved (:mod:`gateway.persisted_queries`).
4. strawberry parses; a mutation over GET is refused 405 with ``Allow: POST`` before
   validation, whatever the schema holds; then it validates and executes.
5. The answer in the media type ``Accept`` chose (:mod:`gateway.media_types`). A GraphQL
   request error (nothing executed: a document that does not parse or validate,
   variables that do not coerce) carries no ``data`` entry and is 400 with
   ``application/graphql-response+json``, 200 with ``application/json``. Field errors
   are partial answers: always 200.
6. Caching headers (:mod:`gateway.http_caching`): a clean GET answer gets
   ``Cache-Control`` with its remaining freshness and an ``ETag``; everything else
   ``no-store``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException  # what strawberry's views raise
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import StrawberryGraphQLError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, GraphQLRequestProtocol
from strawberry.http.base import BaseRequestProtocol
from strawberry.http.types import QueryParams
from strawberry.schema.base import BaseSchema
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult, SubscriptionExecutionResult

from gateway import http_caching
from gateway.graphiql import asks_for_ide, render_graphiql_page
from gateway.http_caching import CachePolicy
from gateway.media_types import (
    GRAPHQL_RESPONSE_JSON,
    JSON,
    content_type,
    is_json_request,
    negotiate,
)
from gateway.observability import request_log
from gateway.persisted_queries import PersistedQueries, PersistedQueryError
from gateway.runtime import require_runtime, runtime_of
from gateway.schema import cost_limits
from gateway.schema.context import GatewayContext
from gateway.schema.document_budget import RequestBudget
from gateway.schema.numbers import NumberBudget
from gateway.schema.response_cache import ResponseCache, key_for
from gateway.security.identity import Identity
from gateway.settings import Settings

_HTTP_CODES: Final = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    415: "UNSUPPORTED_MEDIA_TYPE",
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

logger = logging.getLogger(__name__)


@dataclass
class _Exchange:
    """What handling one HTTP request learns on the way (kept in ``scope["state"]``)."""

    media_type: str
    context: GatewayContext | None = None
    batch: bool = False
    results: list[ExecutionResult] = field(default_factory=list)
    to_remember: dict[str, str] = field(default_factory=dict)
    """APQ documents (by hash) to keep once they have validated."""


class GatewayGraphQL(GraphQL[GatewayContext, None]):
    """strawberry's ASGI view speaking GraphQL over HTTP; see the module docstring."""

    def encode_json(self, data: object) -> bytes:
        """orjson: several times faster than json on large answers (10,000 rooms)."""
        return orjson.dumps(data)

    def __init__(
        self,
        schema: BaseSchema,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        answers: ResponseCache | None = None,
    ) -> None:
        security = settings.security
        self._answers = answers or ResponseCache()
        super().__init__(schema, graphql_ide="graphiql" if security.graphiql else None)
        self._graphiql_assets = settings.graphiql_assets_dir
        self._clock = clock
        self._persisted = PersistedQueries(
            documents=security.persisted_documents,
            only_registered=security.persisted_only,
            max_entries=security.apq_max_entries,
            ttl=security.apq_ttl,
            clock=clock,
        )
        # With client authentication, what a caller sees depends on its key or token.
        self._caching = CachePolicy(
            shared=security.auth == "none",
            ttl=settings.cache_ttl,
            etag_key=http_caching.etag_key(settings.redis_token_key),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        response = await self._respond(request)
        await response(scope, receive, send)

    async def _respond(self, request: Request) -> Response:
        media_type = negotiate(request.headers.get("accept"))
        exchange = _Exchange(media_type or JSON)
        request.scope.setdefault("state", {})[_EXCHANGE] = exchange
        if request.method not in ("GET", "POST"):
            message = "GraphQL is served here over GET (queries only) and POST"
            return self._refusal(exchange, 405, "METHOD_NOT_ALLOWED", message, allow="GET, POST")
        if asks_for_ide(request.method, request.query_params, request.headers):
            # The page holds no data, and the gate lets it through without an identity.
            if self.graphql_ide is None:
                return self._refusal(exchange, 404, "NOT_FOUND", "GraphiQL is off here")
            return await self.render_graphql_ide(request)
        if media_type is None:
            message = (
                "the Accept header names no type this server writes: accept "
                "application/graphql-response+json or application/json"
            )
            return self._refusal(exchange, 406, "NOT_ACCEPTABLE", message)
        if request.method == "POST" and not is_json_request(request.headers.get("content-type")):
            message = "send the POST body as JSON, with 'Content-Type: application/json'"
            return self._refusal(exchange, 415, "UNSUPPORTED_MEDIA_TYPE", message)
        cached = await self._cached_answer(request, exchange)
        if cached is not None:
            return cached
        try:
            response = await self.run(request)
        except HTTPException as exc:
            return self._http_error(request, exchange, exc)
        except PersistedQueryError as exc:
            status = 400 if exc.malformed or exchange.media_type == GRAPHQL_RESPONSE_JSON else 200
            return self._refusal(exchange, status, exc.code, exc.message)
        return self._finish(request, exchange, response)

    async def _cached_answer(self, request: Request, exchange: _Exchange) -> Response | None:
        """The response cache's answer, before any GraphQL work, or None to go the long way
        (see :mod:`gateway.schema.response_cache`). Persisted queries go the long way."""
        identity: Identity | None = request.scope.get("state", {}).get("identity")
        runtime = runtime_of(request)
        if identity is None or runtime is None:
            return None
        started = time.perf_counter()
        if request.method == "GET":
            params: Mapping[str, Any] = request.query_params
            variables: Any = params.get("variables")
            try:
                variables = orjson.loads(variables) if variables else None
            except orjson.JSONDecodeError:
                return None
        else:
            try:
                params = orjson.loads(await request.body())
            except orjson.JSONDecodeError:
                return None
            if not isinstance(params, dict):
                return None
            variables = params.get("variables")
        query, name = params.get("query"), params.get("operationName")
        if (
            not isinstance(query, str)
            or not isinstance(name, str | None)
            or not isinstance(variables, dict | None)
            or params.get("extensions")
        ):
            return None
        kept = self._answers.get(key_for(query, name, variables, identity.scopes), runtime.store)
        if kept is None:
            return None
        response = Response(kept.body, media_type=content_type(exchange.media_type))
        request_log.record(
            runtime.metrics,
            request_id=None,  # made only if the line is written (it costs a few µs)
            operation=name or None,
            outcome="ok",
            seconds=time.perf_counter() - started,
            pbx_fetches=0,
            cache="response",
            client=identity.name,
            codes=[],
        )
        if request.method != "GET":
            return http_caching.uncacheable(response)
        cache_control = self._caching.cache_control(kept.oldest, self._clock())
        return http_caching.cacheable(
            response, cache_control, request.headers.get("if-none-match"), self._caching.etag_key
        )

    def _finish(self, request: Request, exchange: _Exchange, response: Response) -> Response:
        """Status, media type, APQ registration and caching headers of a GraphQL answer."""
        results = exchange.results
        if not results:  # not a GraphQL answer (nothing strawberry serves here today)
            return http_caching.uncacheable(response)
        request_error = [_is_request_error(result) for result in results]
        if not exchange.batch and request_error[0] and exchange.media_type == GRAPHQL_RESPONSE_JSON:
            response.status_code = 500 if _codes(results[0]) & {"INTERNAL_ERROR", ""} else 400
        response.headers["content-type"] = content_type(exchange.media_type)
        if not any(request_error):
            for sha256, query in exchange.to_remember.items():
                self._persisted.remember(sha256, query)
        context = exchange.context
        clean = (
            request.method == "GET"
            and not exchange.batch
            and response.status_code == 200
            and not results[0].errors
            and context is not None
            and not context.stale
        )
        if not clean or context is None:
            return http_caching.uncacheable(response)
        cache_control = self._caching.cache_control(context.stale.oldest_fetched_at, self._clock())
        return http_caching.cacheable(
            response, cache_control, request.headers.get("if-none-match"), self._caching.etag_key
        )

    def _http_error(self, request: Request, exchange: _Exchange, exc: HTTPException) -> Response:
        cause = exc.__cause__
        if isinstance(cause, InvalidOperationTypeError) and request.method == "GET":
            kind = cause.operation_type.value
            message = f"a {kind} cannot be sent with GET (it is not a safe method): use POST"
            return self._refusal(exchange, 405, "METHOD_NOT_ALLOWED", message, allow="POST")
        if isinstance(cause, CannotGetOperationTypeError):
            # GetOperation() failing is a GraphQL request error, not a malformed request.
            status = 400 if exchange.media_type == GRAPHQL_RESPONSE_JSON else 200
            return self._refusal(exchange, status, "OPERATION_RESOLUTION_FAILURE", exc.reason)
        code = _HTTP_CODES.get(exc.status_code, "BAD_REQUEST")
        if isinstance(exc, _CodedRefusal):
            code = exc.code
        return self._refusal(exchange, exc.status_code, code, exc.reason)

    def _refusal(
        self,
        exchange: _Exchange,
        status: int,
        code: str,
        message: str,
        *,
        allow: str | None = None,
    ) -> Response:
        """A GraphQL error answer made before or instead of execution: no ``data`` entry."""
        body = {"errors": [{"message": message, "extensions": {"code": code}}]}
        response = Response(
            self.encode_json(body),
            status_code=status,
            media_type=content_type(exchange.media_type),
        )
        if allow is not None:
            response.headers["allow"] = allow
        return http_caching.uncacheable(response)

    async def render_graphql_ide(self, request: Request) -> Response:
        """The self-hosted GraphiQL page (assets from this server, never a CDN)."""
        return render_graphiql_page(request.url.path, directory=self._graphiql_assets)

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        # Only a browser asking for a page: a GET carrying a persisted-query hash, or any
        # other client's ``Accept: */*``, is a GraphQL request.
        return asks_for_ide(request.method, request.query_params, request.headers)

    def decode_json(self, data: str | bytes) -> object:
        # UTF-8 is the only request encoding (GraphQL over HTTP); json.loads would guess.
        return json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)

    def parse_json(self, data: str | bytes) -> Any:
        """The body (or a GET ``variables``/``extensions`` value): a JSON object or array;
        anything else is a 400, never a 500."""
        try:
            value = self.decode_json(data)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            raise HTTPException(400, "Unable to parse the request as UTF-8 JSON") from exc
        if not isinstance(value, dict | list):
            message = "Expected a JSON object (or, for a batch, an array)"
            raise HTTPException(400, message)
        return value

    def parse_query_params(self, params: QueryParams) -> dict[str, Any]:
        # JSON null for an optional parameter is the same as leaving it out.
        kept = {
            name: value
            for name, value in params.items()
            if not (name in ("variables", "extensions") and value == "null")
        }
        return super().parse_query_params(kept)

    def _validate_batch_request(
        self, request_data: list[GraphQLRequestData], protocol: GraphQLRequestProtocol
    ) -> None:
        # strawberry reads each item with .get(): check they are objects, and say which
        # limit a too-long batch breaks.
        batching = self.schema.config.batching_config
        if batching is None:
            message = "batching is off here (GATEWAY_BATCHING): send one operation per request"
            raise _CodedRefusal(message, "BAD_USER_INPUT")
        if len(request_data) > batching["max_operations"]:
            raise _CodedRefusal(
                f"this batch holds {len(request_data)} operations; at most "
                f"{batching['max_operations']} are allowed (GATEWAY_MAX_BATCH)",
                "OPERATION_TOO_LARGE",
            )
        super()._validate_batch_request(request_data, protocol)
        if not all(isinstance(item, dict) for item in request_data):
            raise _CodedRefusal(
                "every operation of a batch must be a JSON object", "BAD_USER_INPUT"
            )
        # Each item gets the checks a single request gets (strawberry makes them only there).
        for index, item in enumerate(request_data):
            data: Any = item
            for name, kinds in _BATCH_ITEM_TYPES.items():
                value = data.get(name)
                if value is not None and not isinstance(value, kinds):
                    raise _CodedRefusal(
                        f"operation {index} of the batch: `{name}` must be "
                        f"{_BATCH_ITEM_NAMES[name]} or null",
                        "BAD_USER_INPUT",
                    )

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> GatewayContext:
        runtime = require_runtime(request)
        identity: Identity | None = request.scope.get("state", {}).get("identity")
        if identity is None:  # the gate always sets it; fail closed if it did not
            raise StrawberryGraphQLError("unauthenticated", extensions={"code": "UNAUTHENTICATED"})
        context = GatewayContext(
            store=runtime.store,
            numbers=NumberBudget(runtime.settings.max_numbers),
            identity=identity,
            session=runtime.session,
            misses=runtime.misses,
            metrics=runtime.metrics,
            deadline=runtime.clock() + runtime.settings.request_deadline,
            request=request if isinstance(request, Request) else None,
            response=response if isinstance(response, Response) else None,
            document_budget=RequestBudget(cost_limits(runtime.settings.security)),
        )
        exchange = _exchange_of(request)
        if exchange is not None:
            exchange.context = context
        return context

    async def execute_operation(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: GatewayContext,
        root_value: None,
        sub_response: Response,
    ) -> ExecutionResult | list[ExecutionResult] | SubscriptionExecutionResult:
        exchange = _exchange_of(request)
        operations = request_data if isinstance(request_data, list) else [request_data]
        for operation in operations:
            self._prepare(operation, exchange)
        if exchange is not None:
            exchange.batch = isinstance(request_data, list)
        return await super().execute_operation(
            request, request_adapter, request_data, context, root_value, sub_response
        )

    def _prepare(self, operation: GraphQLRequestData, exchange: _Exchange | None) -> None:
        """Check ``operationName`` and put the persisted document in place of the hash."""
        name: Any = operation.operation_name
        if name is not None and not isinstance(name, str):
            raise HTTPException(
                400, "The GraphQL operation's `operationName` must be a string or null."
            )
        operation.operation_name = name or None  # "" means no name (GraphQL over HTTP, GET)
        resolved = self._persisted.resolve(operation.query, operation.extensions)
        operation.query = resolved.query
        if resolved.register is not None and resolved.query is not None and exchange is not None:
            exchange.to_remember[resolved.register] = resolved.query

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        answer = await super().process_result(request, result)
        exchange = _exchange_of(request)
        if exchange is not None:
            exchange.results.append(result)
        if _is_request_error(result):
            answer.pop("data", None)  # nothing executed: the GraphQL spec says no data entry
        if answer.get("errors"):
            request_id = exchange.context.request_id if exchange and exchange.context else None
            answer["errors"] = [_coded(error, request_id) for error in answer["errors"] or ()]
        return answer


class _CodedRefusal(HTTPException):
    """A 400 refusal that names its own ``extensions.code``."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(400, reason)
        self.code = code


def _coded(error: Any, request_id: str | None) -> Any:
    """The error, or, when it has no ``extensions.code``, INTERNAL_ERROR naming the request.

    ErrorCodes codes every error it sees; one raised by a validation rule itself (a bug in
    a limiter, say) ends the operation before ErrorCodes can, so this is the last net.
    """
    if not isinstance(error, dict) or (error.get("extensions") or {}).get("code"):
        return error
    logger.error("uncoded GraphQL error in request %s: %s", request_id, error.get("message"))
    return {
        "message": f"Internal error; quote request id {request_id} to the gateway's operator.",
        "extensions": {"code": "INTERNAL_ERROR", "requestId": request_id},
    }


def _exchange_of(request: Request | WebSocket) -> _Exchange | None:
    exchange = request.scope.get("state", {}).get(_EXCHANGE)
    return exchange if isinstance(exchange, _Exchange) else None


def _is_request_error(result: ExecutionResult) -> bool:
    """Whether ``result`` failed before execution (parse, validation, variable coercion):
    no data and no error tied to a field path."""
    return (
        result.data is None
        and bool(result.errors)
        and all(error.path is None for error in result.errors or ())
    )


def _codes(result: ExecutionResult) -> set[str]:
    """The errors' codes; ``""`` for an error without one (a bug: see :func:`_coded`)."""
    return {str((error.extensions or {}).get("code") or "") for error in result.errors or ()}
