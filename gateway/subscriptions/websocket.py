"""``graphql-transport-ws`` on ``/graphql``: strawberry's handler with the gateway's rules.

In the order a connection lives:

1. The upgrade passed the connection guard (counted, headers bounded) and the security
   gate, which left a :class:`~gateway.security.gate.ConnectionAuth` in the scope; a page
   on another origin was refused by the view (see the README, "Live data").
2. ``connection_init`` within ``GATEWAY_LIVE_INIT_TIMEOUT`` (else 4408). Its payload's
   ``authorization`` / ``x-api-key`` (or the upgrade request's headers) go through the
   same authenticator as HTTP; failure closes 4401 and charges the address's
   failed-authentication budget. The identity then holds for the connection, until its
   JWT expires (closed 4401 then).
3. Each ``subscribe`` (any operation: strawberry runs queries too) is checked before any
   work: its payload's shape, the connection's count
   (``GATEWAY_LIVE_MAX_SUBSCRIPTIONS_PER_CONNECTION``), the caller's request budget, and
   the caller's count over the process (:mod:`~gateway.subscriptions.slots`): refused with
   an ``error`` message, coded. Persisted queries resolve as over HTTP (a hash in
   ``extensions``; with ``GATEWAY_PERSISTED_ONLY``, only registered documents run). It
   runs with a context of its own, like one HTTP request (its own DataLoader, deadline
   and document budget), through the same parse, size limits and validation (the
   schema's extensions).
4. A ``ping`` every ``GATEWAY_LIVE_KEEPALIVE`` seconds; a connection that has left one
   unanswered for two intervals is closed 1011. A subscriber that fell behind its feed
   gets an ``error`` with ``SLOW_CONSUMER`` and the connection is closed 1013 (try again
   later: graphql-ws clients reconnect, and a new subscription starts from the current
   state).

Every ``next`` payload's errors are coded (:mod:`~gateway.subscriptions.errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol, cast

import orjson
from graphql import GraphQLError
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    PongMessage,
    SubscribeMessage,
)
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.utils.aio import aclosing

from gateway.error_code import ErrorCode
from gateway.errors import retry_seconds
from gateway.persisted_queries import PersistedQueryError
from gateway.schema.context import GatewayContext
from gateway.security.gate import ConnectionAuth, Unauthenticated
from gateway.security.identity import Identity
from gateway.settings import LiveTransportLimits
from gateway.subscriptions.errors import coded, coded_errors, is_slow_consumer
from gateway.subscriptions.slots import SubscriptionSlots

logger = logging.getLogger("gateway.subscriptions")

UNAUTHORIZED = 4401
"""graphql-transport-ws's close code for a connection that is not authenticated."""
TRY_AGAIN_LATER = 1013
"""RFC 6455's "try again later": a slow consumer; clients reconnect and start afresh."""
KEEPALIVE_TIMEOUT = 1011
"""A connection that answered no ``ping`` for two intervals (as websockets closes one)."""
STATE_CONNECTION_AUTH = "connection_auth"
"""Where the security gate leaves the connection's :class:`ConnectionAuth`."""

_SUBSCRIBE_FIELDS: Mapping[str, type | tuple[type, ...]] = {
    "query": (str, type(None)),  # None: a persisted query's hash in ``extensions``
    "variables": (dict, type(None)),
    "operationName": (str, type(None)),
    "extensions": (dict, type(None)),
}


class WebSocketHost(Protocol):
    """What the handler needs of the view (:class:`gateway.graphql_view.GatewayGraphQL`)."""

    live_limits: LiveTransportLimits
    subscriptions: SubscriptionSlots

    async def operation_context(self, websocket: WebSocket, identity: Identity) -> GatewayContext:
        """A fresh context for one operation of an authenticated connection."""

    def resolve_document(
        self, query: str | None, extensions: Mapping[str, Any] | None
    ) -> str | None:
        """The document to run, as for HTTP (persisted queries, ``GATEWAY_PERSISTED_ONLY``);
        raises :class:`~gateway.persisted_queries.PersistedQueryError` to refuse."""


class GatewayTransportWSHandler(BaseGraphQLTransportWSHandler[GatewayContext, None]):
    """strawberry's graphql-transport-ws handler with the rules of the module docstring."""

    identity: Identity | None = None
    _keepalive: asyncio.Task[None] | None = None
    _expiry: asyncio.Task[None] | None = None
    _unanswered_since: float | None = None
    """When the oldest unanswered ``ping`` was sent; None: every ping was answered."""

    @property
    def _host(self) -> WebSocketHost:
        return cast("WebSocketHost", self.view)

    @property
    def _socket(self) -> WebSocket:
        return cast("ASGIWebSocketAdapter", self.websocket).ws

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        payload: object = message.get("payload") or {}
        if self.connection_init_received or not isinstance(payload, dict):
            await super().handle_connection_init(message)  # 4429 / 4400, strawberry's words
            return
        auth = self._socket.scope.get("state", {}).get(STATE_CONNECTION_AUTH)
        try:
            if not isinstance(auth, ConnectionAuth):  # the gate always sets it: fail closed
                raise Unauthenticated("this connection did not pass the security gate")
            self.identity = auth.identify(payload)
        except Unauthenticated as exc:
            self.connection_init_received = True
            if self.connection_init_timeout_task:
                self.connection_init_timeout_task.cancel()
            # The reason is a close frame's: at most 123 bytes of UTF-8.
            reason = f"Unauthorized: {exc}".encode()[:123].decode(errors="ignore")
            await self.websocket.close(UNAUTHORIZED, reason)
            return
        await super().handle_connection_init(message)
        if self.connection_acknowledged:
            self._keepalive = asyncio.create_task(self._ping_every_interval())
            if self.identity.expires_at is not None:
                self._expiry = asyncio.create_task(self._close_at(self.identity.expires_at))

    async def handle_pong(self, message: PongMessage) -> None:
        self._unanswered_since = None

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if not self.connection_acknowledged or self.identity is None:
            await super().handle_subscribe(message)  # 4401, strawberry's words
            return
        operation_id: object = message.get("id")
        payload: object = message.get("payload")
        if (
            not isinstance(operation_id, str)
            or not isinstance(payload, dict)
            or not _well_formed(payload)
        ):
            await self.websocket.close(4400, "Invalid subscribe message")
            return
        if operation_id in self.operations:
            await super().handle_subscribe(message)  # 4409, strawberry's words
            return
        try:
            query = self._host.resolve_document(payload.get("query"), payload.get("extensions"))
        except PersistedQueryError as exc:
            await self.send_message(_error(operation_id, [coded(exc.message, exc.code)]))
            return
        if query is None:
            missing = coded("the subscribe payload holds no query", ErrorCode.BAD_REQUEST)
            await self.send_message(_error(operation_id, [missing]))
            return
        payload["query"] = query
        refusal = self._refusal(self.identity)
        if refusal is not None:
            await self.send_message(_error(operation_id, [refusal]))
            return
        slot = self._host.subscriptions.take(self.identity.name)
        if slot is None:
            most = self._host.subscriptions.per_identity
            message_text = (
                f"{self.identity.name} holds its maximum of {most} subscriptions on this "
                "gateway (GATEWAY_LIVE_MAX_SUBSCRIPTIONS_PER_IDENTITY); complete one first"
            )
            error = coded(message_text, ErrorCode.TOO_MANY_SUBSCRIPTIONS)
            await self.send_message(_error(operation_id, [error]))
            return
        await super().handle_subscribe(message)
        operation = self.operations.get(operation_id)
        if operation is None or operation.task is None:
            slot.release()
            return
        operation.task.add_done_callback(lambda _: slot.release())

    def _refusal(self, identity: Identity) -> dict[str, Any] | None:
        """A coded error when this connection or caller may not start one more operation."""
        most = self._host.live_limits.max_per_connection
        if len(self.operations) >= most:
            message = (
                f"this connection runs its maximum of {most} operations "
                "(GATEWAY_LIVE_MAX_SUBSCRIPTIONS_PER_CONNECTION); complete one first"
            )
            return coded(message, ErrorCode.TOO_MANY_SUBSCRIPTIONS)
        auth = self._socket.scope.get("state", {}).get(STATE_CONNECTION_AUTH)
        wait = auth.charge(identity) if isinstance(auth, ConnectionAuth) else 0.0
        if wait > 0:
            retry = retry_seconds(wait)
            message = f"too many requests from {identity.name}; retry in {retry} s"
            return coded(message, ErrorCode.RATE_LIMITED)
        return None

    async def run_operation(self, operation: Operation[GatewayContext, None]) -> None:
        """strawberry's, with a fresh context per operation and coded errors."""
        assert self.identity is not None  # only acknowledged connections subscribe
        context = await self._host.operation_context(self._socket, self.identity)
        try:
            result_source = await self.schema.stream(
                operation.query,
                variable_values=operation.variables,
                context_value=context,
                root_value=self.root_value,
                operation_name=operation.operation_name,
            )
            async with aclosing(result_source):
                first = True
                async for result in result_source:
                    if first and isinstance(result, PreExecutionError):
                        await self._pre_execution_error(operation, result, context)
                        return
                    first = False
                    if not isinstance(result, ExecutionResult):
                        await self._reject_incremental_delivery(operation)
                        return
                    if is_slow_consumer(result.errors):
                        await self._slow_consumer(operation, result, context)
                        return
                    payload = _payload(result, context)
                    message = {"id": operation.id, "type": "next", "payload": payload}
                    await operation.send_operation_message(cast("Message", message))
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
        except asyncio.CancelledError:
            raise
        except Exception as error:
            await self.handle_task_exception(error)
            with contextlib.suppress(Exception):
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
            self.operations.pop(operation.id, None)
            raise

    async def _pre_execution_error(
        self,
        operation: Operation[GatewayContext, None],
        result: PreExecutionError,
        context: GatewayContext,
    ) -> None:
        # strawberry closes 4400 for a document that does not parse; the protocol allows
        # an error message instead, which says why with a code, and keeps the connection.
        errors: list[GraphQLError] = list(result.errors or ())
        await operation.send_operation_message(
            _error(operation.id, coded_errors(errors, context.request_id))
        )

    async def _slow_consumer(
        self,
        operation: Operation[GatewayContext, None],
        result: ExecutionResult,
        context: GatewayContext,
    ) -> None:
        """A final ``error`` (``SLOW_CONSUMER``), then the connection closes 1013."""
        logger.info(
            "closed a slow subscriber",
            extra={
                "fields": {
                    "error_codes": [ErrorCode.SLOW_CONSUMER],
                    "request_id": context.request_id,
                }
            },
        )
        await operation.send_operation_message(
            _error(operation.id, coded_errors(result.errors or [], context.request_id))
        )
        await self.websocket.close(TRY_AGAIN_LATER, "slow consumer")

    async def _ping_every_interval(self) -> None:
        """A ``ping`` per interval; close when one has been unanswered for two."""
        interval = self._host.live_limits.keepalive
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            if self._unanswered_since is not None and now - self._unanswered_since >= 2 * interval:
                await self.websocket.close(KEEPALIVE_TIMEOUT, "keep-alive timeout")
                return
            if self._unanswered_since is None:
                self._unanswered_since = now
            await self.send_message({"type": "ping"})

    async def _close_at(self, expires_at: float) -> None:
        """A token accepted at ``connection_init`` expires: the connection closes 4401, as an
        HTTP request with that token would be refused from then on."""
        await asyncio.sleep(max(0.0, expires_at - time.time()))  # a JWT's exp is wall time
        await self.websocket.close(UNAUTHORIZED, "Unauthorized: the bearer token has expired")

    async def send_message(self, message: Message) -> None:
        # The socket closed under us: nothing to tell; the receive loop ends the operations.
        with contextlib.suppress(RuntimeError, WebSocketDisconnected):
            await super().send_message(message)

    async def shutdown(self) -> None:
        for task in (self._keepalive, self._expiry):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await super().shutdown()


class TextWebSocketAdapter(ASGIWebSocketAdapter):
    """strawberry's adapter, sending text frames: the view encodes JSON to bytes (orjson),
    which strawberry would send as binary frames, and graphql-transport-ws is text."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(orjson.dumps(message).decode())
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


def _error(operation_id: str, errors: list[dict[str, Any]]) -> Message:
    """An ``error`` message: the operation ends with these (coded) errors."""
    return cast("Message", {"id": operation_id, "type": "error", "payload": errors})


def _well_formed(payload: dict[str, Any]) -> bool:
    """A subscribe payload strawberry can read without tripping: the protocol's fields, of
    the protocol's types."""
    return all(isinstance(payload.get(name), kinds) for name, kinds in _SUBSCRIBE_FIELDS.items())


def _payload(result: ExecutionResult, context: GatewayContext) -> dict[str, Any]:
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = coded_errors(result.errors, context.request_id)
    if result.extensions:
        payload["extensions"] = result.extensions
    return payload
