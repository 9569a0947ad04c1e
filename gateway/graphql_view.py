"""The GraphQL HTTP view: strawberry's ASGI app, adapted to the gateway.

A fresh :class:`GatewayContext` (and so a fresh DataLoader) per request, built from the
runtime and the identity the security gate established; HTTP-level refusals (bad JSON,
batching off, wrong method) answered as coded GraphQL errors instead of plain text.
"""

from __future__ import annotations

from cross_web import HTTPException  # what strawberry's HTTP views raise
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import StrawberryGraphQLError

from gateway.runtime import Runtime
from gateway.schema.context import GatewayContext
from gateway.schema.numbers import NumberBudget
from gateway.security.identity import Identity

_HTTP_CODES = {400: "BAD_REQUEST", 405: "METHOD_NOT_ALLOWED", 415: "UNSUPPORTED_MEDIA_TYPE"}


class GatewayGraphQL(GraphQL[GatewayContext, None]):
    """strawberry's ASGI view: a fresh context (and DataLoader) per request, and HTTP-level
    refusals (bad JSON, batching off, wrong method) as coded GraphQL errors, not text."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            response = await self.run(Request(scope=scope, receive=receive))
        except HTTPException as exc:
            code = _HTTP_CODES.get(exc.status_code, "BAD_REQUEST")
            if "batch" in exc.reason.lower():
                code = "OPERATION_TOO_LARGE" if "max" in exc.reason.lower() else "BAD_USER_INPUT"
            body = {"errors": [{"message": exc.reason, "extensions": {"code": code}}]}
            response = JSONResponse(body, status_code=exc.status_code)
        await response(scope, receive, send)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> GatewayContext:
        runtime: Runtime = request.app.state.runtime
        identity: Identity | None = request.scope.get("state", {}).get("identity")
        if identity is None:  # the gate always sets it; fail closed if it did not
            raise StrawberryGraphQLError("unauthenticated", extensions={"code": "UNAUTHENTICATED"})
        return GatewayContext(
            store=runtime.store,
            numbers=NumberBudget(runtime.settings.max_numbers),
            identity=identity,
            misses=runtime.misses,
            metrics=runtime.metrics,
            deadline=runtime.clock() + runtime.settings.request_deadline,
            request=request if isinstance(request, Request) else None,
            response=response if isinstance(response, Response) else None,
        )
