"""The gate in front of ``/graphql``: body size, who is calling, and how often.

An ASGI wrapper, so a request that fails here never reaches GraphQL parsing, let alone
the PBX. In order:

1. The GraphiQL page itself (a browser's ``GET`` asking for HTML) passes when GraphiQL is
   on: it holds no data; the queries it sends come back through this gate.
2. The body (and a GET's query string) may hold ``max_body_bytes``; beyond: 413 (414)
   ``OPERATION_TOO_LARGE``.
3. The caller is identified (API key, JWT, or anonymous by address); failure: 401
   ``UNAUTHENTICATED`` with a ``WWW-Authenticate`` challenge.
4. With ``GATEWAY_RATE_LIMIT`` set (it is off by default), the caller's request budget is
   charged; empty: 429 ``RATE_LIMITED`` with ``Retry-After``.

The identity goes on to the GraphQL context through ``scope["state"]``. Rejections are
GraphQL-shaped JSON (``{"errors": [{"message", "extensions": {"code"}}]}``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import Counter
from starlette.datastructures import Headers, QueryParams
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.error_code import ErrorCode
from gateway.errors import retry_seconds
from gateway.graphiql import asks_for_ide
from gateway.security.api_keys import ApiKeyAuthenticator
from gateway.security.config import SecuritySettings
from gateway.security.identity import Identity
from gateway.security.jwt_auth import InvalidToken
from gateway.security.rate_limit import RateLimiter

logger = logging.getLogger("gateway.request")


class RefusalMetrics(Protocol):
    """Where refusals are counted (``gateway.observability.metrics.Metrics``): the gate
    sits below observability in the declared layers, so it names only what it uses."""

    @property
    def rejections(self) -> Counter: ...


class Unauthenticated(Exception):
    """No acceptable credentials; the message says what is missing or wrong."""


class Authenticator:
    """Turns a request's headers into an :class:`Identity`, per ``GATEWAY_AUTH``."""

    def __init__(self, settings: SecuritySettings) -> None:
        self._settings = settings
        self._keys = ApiKeyAuthenticator(settings.api_keys)

    @property
    def challenge(self) -> str:
        """The ``WWW-Authenticate`` value for a 401."""
        return 'Bearer realm="pbx-gateway"'

    def identify(self, headers: Headers, address: str) -> Identity:
        return self.identify_credentials(
            headers.get("authorization"), headers.get("x-api-key"), address
        )

    def identify_credentials(
        self, authorization: str | None, api_key: str | None, address: str
    ) -> Identity:
        """:meth:`identify` from the two headers' values (the hot path reads them itself)."""
        mode = self._settings.auth
        if mode == "none":
            return Identity(f"anonymous@{address}", self._settings.anonymous_scopes, "anonymous")
        credential = _bearer(authorization)
        if mode == "api-key":
            credential = api_key or credential
            if not credential:
                raise Unauthenticated(
                    "this gateway needs an API key: send it as 'X-API-Key: <key>' or "
                    "'Authorization: Bearer <key>'"
                )
            identity = self._keys.identify(credential)
            if identity is None:
                raise Unauthenticated("the API key is not valid")
            return identity
        if not credential:
            raise Unauthenticated(
                "this gateway needs a bearer token: 'Authorization: Bearer <jwt>'"
            )
        verifier = self._settings.jwt
        if verifier is None:  # from_environ never allows this; fail closed all the same
            raise Unauthenticated("JWT verification is not configured")
        try:
            return verifier.identify(credential)
        except InvalidToken as exc:
            raise Unauthenticated(str(exc)) from None


class GraphQLGate:
    """ASGI middleware for the GraphQL route; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: SecuritySettings,
        authenticator: Authenticator,
        requests: RateLimiter | None,
        clock: Callable[[], float] = time.monotonic,
        metrics: RefusalMetrics | None = None,
    ) -> None:
        self._app = app
        self._settings = settings
        self._authenticator = authenticator
        self._requests = requests
        self._metrics = metrics
        self._failures = RateLimiter(rate=1.0, burst=20.0, clock=clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._refuse(
                scope, receive, send, 400, ErrorCode.BAD_REQUEST, "only HTTP is served here"
            )
            return
        headers = Headers(scope=scope)
        if self._is_ide_page(scope, headers):
            await self._app(scope, receive, send)
            return
        if len(scope.get("query_string", b"")) > self._settings.max_body_bytes:
            message = f"the query string exceeds {self._settings.max_body_bytes} bytes"
            await self._refuse(scope, receive, send, 414, ErrorCode.OPERATION_TOO_LARGE, message)
            return
        body = await _read_body(receive, self._settings.max_body_bytes)
        if body is None:
            message = f"the request body exceeds {self._settings.max_body_bytes} bytes"
            await self._refuse(scope, receive, send, 413, ErrorCode.OPERATION_TOO_LARGE, message)
            return
        client = scope.get("client")
        address = client[0] if client else "unknown"
        try:
            identity = self._authenticator.identify(headers, address)
        except Unauthenticated as exc:
            # Guessing keys costs too: an address's failed attempts have a budget of their
            # own (the request budget is per identity, which a failure does not have).
            wait = self._failures.take(address)
            if wait > 0:
                what = f"failed authentications from {address}"
                await self._rate_limited(scope, receive, send, what, wait)
                return
            extra = {"www-authenticate": self._authenticator.challenge}
            await self._refuse(
                scope, receive, send, 401, ErrorCode.UNAUTHENTICATED, str(exc), extra
            )
            return
        wait = 0.0 if self._requests is None else self._requests.take(identity.name)
        if wait > 0:
            await self.refuse_rate_limited(scope, receive, send, identity, wait)
            return
        scope.setdefault("state", {})["identity"] = identity
        await self._app(scope, _replay(body, receive), send)

    async def refuse_rate_limited(
        self, scope: Scope, receive: Receive, send: Send, identity: Identity, wait: float
    ) -> None:
        """The 429 for ``identity``'s empty request budget (the hot path's too)."""
        await self._rate_limited(scope, receive, send, f"requests from {identity.name}", wait)

    async def _rate_limited(
        self, scope: Scope, receive: Receive, send: Send, what: str, wait: float
    ) -> None:
        retry = retry_seconds(wait)
        message = f"too many {what}; retry in {retry} s"
        await self._refuse(
            scope, receive, send, 429, ErrorCode.RATE_LIMITED, message, {"retry-after": str(retry)}
        )

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer a refusal, count it, and log it (one line, like every request)."""
        if self._metrics is not None:
            self._metrics.rejections.labels(code).inc()
        client = scope.get("client")
        logger.info(
            "refused %s: %s",
            code,
            message,
            extra={
                "fields": {
                    "status": status,
                    "error_codes": [code],
                    "address": client[0] if client else None,
                }
            },
        )
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        body: dict[str, Any] = {"errors": [{"message": message, "extensions": {"code": code}}]}
        await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)

    def _is_ide_page(self, scope: Scope, headers: Headers) -> bool:
        params = QueryParams(scope.get("query_string", b""))
        return self._settings.graphiql and asks_for_ide(scope["method"], params, headers)


def _bearer(authorization: str | None) -> str | None:
    scheme, _, value = (authorization or "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, then the real channel (which reports the disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
