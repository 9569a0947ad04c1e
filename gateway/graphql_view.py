"""The GraphQL HTTP view: strawberry's ASGI app, adapted to the gateway and to the GraphQL
over HTTP specification (the 2024+ draft).

A thin strawberry subclass: its hooks put in order what lives elsewhere, the protocol's
rules and refusals (:mod:`gateway.http.negotiation`), the response cache's fast path
(:mod:`gateway.http.fast_path`) and the compiled plans' path
(:mod:`gateway.http.compiled_path`). It uses strawberry's public view API, and one private
hook (:data:`STRAWBERRY_PRIVATE_HOOK`), pinned and tested.

One request, in order:

1. Refusals before any GraphQL work, each a coded GraphQL error: a method other than GET
   or POST (405, ``Allow: GET, POST``), an ``Accept`` naming no JSON type this view
   writes (406), a POST body that is not ``application/json`` in UTF-8 (415). Then the
   response cache's answer, when it has one (no GraphQL work at all), then a compiled
   plan's, for the reads one covers (no strawberry execution).
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

Subscriptions (:mod:`gateway.subscriptions`): a request whose ``Accept`` asks for a
multipart stream skips steps 1's media-type refusals and the cache and is answered as a
stream, holding one of its caller's subscription slots until it ends; a WebSocket on
``/graphql`` speaks ``graphql-transport-ws`` (the legacy ``graphql-ws`` is off); the gate
refused it already when a browser opened it from a foreign origin.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import timedelta
from typing import Any

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
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult, SubscriptionExecutionResult

from gateway import http_caching
from gateway.error_code import ErrorCode
from gateway.graphiql import asks_for_ide, render_graphiql_page
from gateway.http import negotiation
from gateway.http.compiled_path import CompiledPath
from gateway.http.fast_path import FastPath
from gateway.http.negotiation import Exchange, exchange_of
from gateway.http_caching import CachePolicy
from gateway.media_types import GRAPHQL_RESPONSE_JSON, JSON, content_type, negotiate
from gateway.persisted_queries import PersistedQueries, PersistedQueryError
from gateway.runtime import require_runtime
from gateway.schema import cost_limits
from gateway.schema.context import GatewayContext
from gateway.schema.document_budget import RequestBudget
from gateway.schema.document_cache import documents_of
from gateway.schema.numbers import NumberBudget
from gateway.schema.response_cache import ResponseCache
from gateway.security.identity import Identity
from gateway.settings import Settings
from gateway.subscriptions.errors import coded_errors
from gateway.subscriptions.multipart import (
    GatewayMultipartTransport,
    MultipartBody,
    is_multipart,
    multipart_transport,
    wants_multipart,
)
from gateway.subscriptions.slots import Slot, SubscriptionSlots
from gateway.subscriptions.websocket import GatewayTransportWSHandler, TextWebSocketAdapter

MULTIPART_SUBSCRIPTION_PROTOCOL = "multipart-subscription"
"""strawberry's name for the multipart subscription transport."""
_SLOT = "subscription_slot"
"""Where a multipart stream's subscription slot waits to be released (``scope["state"]``)."""
UNAUTHENTICATED_CONNECTION = Identity("unauthenticated", frozenset(), "none")
"""A WebSocket's identity until its ``connection_init`` authenticates it: no scope."""

STRAWBERRY_PRIVATE_HOOK = "_validate_batch_request"
"""The one private strawberry method overridden here: strawberry calls it, from
``parse_http_body``, between parsing a batch and reading its items with ``.get()``, the
only moment a batch can be refused in our words before strawberry trips over a non-object
item. pyproject.toml pins strawberry to the versions where it has this signature, and
tests/test_graphql_view.py fails loudly if it changes."""


class GatewayGraphQL(GraphQL[GatewayContext, None]):
    """strawberry's ASGI view speaking GraphQL over HTTP; see the module docstring."""

    graphql_transport_ws_handler_class = GatewayTransportWSHandler
    websocket_adapter_class = TextWebSocketAdapter

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
        live = settings.live_transport
        super().__init__(
            schema,
            graphql_ide="graphiql" if security.graphiql else None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, MULTIPART_SUBSCRIPTION_PROTOCOL),
            connection_init_wait_timeout=timedelta(seconds=live.init_timeout),
            max_subscriptions_per_connection=None,  # our handler counts, with a code
        )
        self.stream_transport_classes_by_protocol = {
            MULTIPART_SUBSCRIPTION_PROTOCOL: multipart_transport(live.keepalive)
        }
        self.live_limits = live
        self.subscriptions = SubscriptionSlots(live.max_per_identity)
        """Subscriptions held per caller on this process, over both transports."""
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
        answers = answers or ResponseCache()
        self._fast_path = FastPath(answers, self._caching, clock)
        documents = documents_of(getattr(schema, "extensions", ()))  # strawberry.Schema has them
        self._compiled = (
            CompiledPath(documents, answers, self._caching, cost_limits(security), clock)
            if settings.compiled_plans and documents is not None and not security.persisted_only
            else None
        )

    @property
    def caching(self) -> CachePolicy:
        """How answers are marked cacheable; the hot path marks its own the same way."""
        return self._caching

    @property
    def compiled(self) -> CompiledPath | None:
        """The compiled plans' path (None when off); the hot path runs it on a miss."""
        return self._compiled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        try:
            response = await self._respond(request)
            await response(scope, receive, send)
        finally:
            slot = scope.get("state", {}).pop(_SLOT, None)
            if isinstance(slot, Slot):
                slot.release()

    async def _respond(self, request: Request) -> Response:
        if wants_multipart(request.headers.get("accept")):
            return await self._stream(request)
        media_type = negotiate(request.headers.get("accept"))
        exchange = Exchange.start(request, media_type)
        refused = negotiation.refuse_method(request, exchange)
        if refused is not None:
            return refused
        if asks_for_ide(request.method, request.query_params, request.headers):
            # The page holds no data, and the gate lets it through without an identity.
            if self.graphql_ide is None:
                return negotiation.refusal(
                    exchange, 404, ErrorCode.NOT_FOUND, "GraphiQL is off here"
                )
            return await self.render_graphql_ide(request)
        refused = negotiation.refuse_media_types(request, media_type is not None, exchange)
        if refused is not None:
            return refused
        cached = await self._fast_path.answer(request, exchange)
        if cached is not None:
            return cached
        if self._compiled is not None:  # a read a compiled plan answers from the store
            compiled = await self._compiled.answer(request, exchange)
            if compiled is not None:
                return compiled
        try:
            response = await self.run(request)
        except HTTPException as exc:
            return negotiation.refusal_for(request, exchange, exc)
        except PersistedQueryError as exc:
            status = 400 if exc.malformed or exchange.media_type == GRAPHQL_RESPONSE_JSON else 200
            return negotiation.refusal(exchange, status, exc.code, exc.message)
        return self._finish(request, exchange, response)

    async def _stream(self, request: Request) -> Response:
        """A multipart subscription: the caller's slot taken, then strawberry's stream."""
        exchange = Exchange.start(request, JSON)
        exchange.streaming = True
        refused = negotiation.refuse_method(request, exchange)
        if refused is not None:
            return refused
        identity: Identity | None = request.scope.get("state", {}).get("identity")
        slot = self.subscriptions.take(identity.name) if identity is not None else None
        if slot is None:
            most = self.subscriptions.per_identity
            message = (
                f"this caller holds its maximum of {most} subscriptions on this gateway "
                "(GATEWAY_LIVE_MAX_SUBSCRIPTIONS_PER_IDENTITY); end one first"
            )
            return negotiation.refusal(exchange, 429, ErrorCode.TOO_MANY_SUBSCRIPTIONS, message)
        request.scope["state"][_SLOT] = slot
        try:
            response = await self.run(request)
        except HTTPException as exc:
            return negotiation.refusal_for(request, exchange, exc)
        except PersistedQueryError as exc:
            return negotiation.refusal(exchange, 400, exc.code, exc.message)
        return http_caching.uncacheable(response)

    async def create_streaming_response(
        self,
        request: Request | WebSocket,
        stream: Callable[[], AsyncIterator[str]],
        sub_response: Response,
        headers: Mapping[str, str],
    ) -> Response:
        if is_multipart(headers):
            identity = request.scope.get("state", {}).get("identity")
            expires_at = identity.expires_at if isinstance(identity, Identity) else None
            body = MultipartBody(GatewayMultipartTransport(), self.encode_json_string)
            parts = stream
            stream = lambda: body.stream(parts(), expires_at)  # noqa: E731
        return await super().create_streaming_response(request, stream, sub_response, headers)

    def _finish(self, request: Request, exchange: Exchange, response: Response) -> Response:
        """Status, media type, APQ registration and caching headers of a GraphQL answer."""
        results = exchange.results
        if not results:  # not a GraphQL answer (nothing strawberry serves here today)
            return http_caching.uncacheable(response)
        request_error = [negotiation.is_request_error(result) for result in results]
        if not exchange.batch and request_error[0] and exchange.media_type == GRAPHQL_RESPONSE_JSON:
            internal = negotiation.codes(results[0]) & {ErrorCode.INTERNAL_ERROR, ""}
            response.status_code = 500 if internal else 400
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
            and not context.live_read  # who is in a room changes by the second
        )
        if not clean or context is None:
            return http_caching.uncacheable(response)
        cache_control = self._caching.cache_control(context.stale.oldest_fetched_at, self._clock())
        return http_caching.cacheable(
            response, cache_control, request.headers.get("if-none-match"), self._caching.etag_key
        )

    def is_websocket_origin_allowed(self, request: WebSocket, origin: str) -> bool:
        # The security gate decided already (GATEWAY_CORS_ORIGINS, the same origin); the
        # strawberry releases that check origins themselves would know only the latter.
        return True

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
        # The private hook (see STRAWBERRY_PRIVATE_HOOK): our words for the size limits
        # first, then strawberry's own checks (a streaming transport cannot batch), then
        # the items' shape, before strawberry reads them.
        negotiation.check_batch_size(request_data, self.schema.config.batching_config)
        super()._validate_batch_request(request_data, protocol)
        negotiation.check_batch_items(request_data)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> GatewayContext:
        if isinstance(request, WebSocket):
            # Authenticated by its connection_init; each operation gets a context of its
            # own then (operation_context). This one is the handler's, and runs nothing.
            return self._context(request, response, UNAUTHENTICATED_CONNECTION)
        identity: Identity | None = request.scope.get("state", {}).get("identity")
        if identity is None:  # the gate always sets it; fail closed if it did not
            raise StrawberryGraphQLError(
                "unauthenticated", extensions={"code": ErrorCode.UNAUTHENTICATED}
            )
        context = self._context(request, response, identity)
        exchange = exchange_of(request)
        if exchange is not None:
            exchange.context = context
        return context

    def resolve_document(
        self, query: str | None, extensions: Mapping[str, Any] | None
    ) -> str | None:
        """A WebSocket operation's document, through the persisted queries as over HTTP
        (nothing is learned from a WebSocket: APQ registration is HTTP's)."""
        return self._persisted.resolve(query, extensions).query

    async def operation_context(self, websocket: WebSocket, identity: Identity) -> GatewayContext:
        """A fresh context for one operation of an authenticated WebSocket: a DataLoader,
        a deadline and a document budget of its own, as one HTTP request has."""
        return self._context(websocket, websocket, identity)

    def _context(
        self, request: Request | WebSocket, response: Response | WebSocket, identity: Identity
    ) -> GatewayContext:
        runtime = require_runtime(request)
        return GatewayContext(
            store=runtime.store,
            live=runtime.live,
            feed=runtime.feed,
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

    async def execute_operation(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: GatewayContext,
        root_value: None,
        sub_response: Response,
    ) -> ExecutionResult | list[ExecutionResult] | SubscriptionExecutionResult:
        exchange = exchange_of(request)
        operations = request_data if isinstance(request_data, list) else [request_data]
        for operation in operations:
            self._prepare(operation, exchange)
        if exchange is not None:
            exchange.batch = isinstance(request_data, list)
        return await super().execute_operation(
            request, request_adapter, request_data, context, root_value, sub_response
        )

    def _prepare(self, operation: GraphQLRequestData, exchange: Exchange | None) -> None:
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
        exchange = exchange_of(request)
        if exchange is not None and exchange.streaming:
            # A stream's results are sent as they come; none is kept for the answer.
            stream_id = exchange.context.request_id if exchange.context else "unknown"
            if negotiation.is_request_error(result):
                answer.pop("data", None)
            if result.errors:
                answer["errors"] = list[object](coded_errors(result.errors, stream_id))
            return answer
        if exchange is not None:
            exchange.results.append(result)
        if negotiation.is_request_error(result):
            answer.pop("data", None)  # nothing executed: the GraphQL spec says no data entry
        if answer.get("errors"):
            request_id = exchange.context.request_id if exchange and exchange.context else None
            coded = [negotiation.coded(error, request_id) for error in answer["errors"] or ()]
            answer["errors"] = coded
        return answer
