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

A WebSocket (``graphql-transport-ws``) is identified later, by its ``connection_init``
message: the gate leaves a :class:`ConnectionAuth` in ``scope["state"]``, which applies the
same authenticator, failed-authentication budget and request budget to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

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
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
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

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket from a page on a foreign origin is refused before the upgrade (HTTP
        403): browsers let any page open one, with no CORS preflight (cross-site WebSocket
        hijacking). No ``Origin`` (not a browser), the gateway's own origin, or one listed
        in ``GATEWAY_CORS_ORIGINS`` pass; authentication waits for ``connection_init``."""
        headers = Headers(scope=scope)
        client = scope.get("client")
        address = client[0] if client else "unknown"
        origin = headers.get("origin")
        if origin is not None and not _origin_allowed(
            origin, headers.get("host"), self._settings.cors_origins
        ):
            message = f"a WebSocket from origin {origin[:100]!r} is not allowed here"
            self._count_and_log(ErrorCode.FORBIDDEN, message, address, 403)
            await send({"type": "websocket.close", "code": 1008})
            return
        scope.setdefault("state", {})["connection_auth"] = ConnectionAuth(self, headers, address)
        await self._app(scope, receive, send)

    def identify_connection(
        self, headers: Headers, address: str, problem: str | None = None
    ) -> Identity:
        """A WebSocket's identity from ``headers`` (its ``connection_init`` credentials over
        its upgrade request's); failure (or a ``problem`` found in the credentials' shape)
        charges the address's failed-authentication budget, counts and logs the refusal,
        and raises :class:`Unauthenticated`."""
        try:
            if problem is not None:
                raise Unauthenticated(problem)
            return self._authenticator.identify(headers, address)
        except Unauthenticated as exc:
            wait = self._failures.take(address)
            message = str(exc)
            if wait > 0:
                retry = retry_seconds(wait)
                message = f"too many failed authentications from {address}; retry in {retry} s"
            self._count_and_log(ErrorCode.UNAUTHENTICATED, message, address, 4401)
            raise Unauthenticated(message) from None

    def charge(self, identity: Identity) -> float:
        """Charge one request to ``identity``'s budget: seconds to wait, 0 when allowed."""
        return 0.0 if self._requests is None else self._requests.take(identity.name)

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
        client = scope.get("client")
        self._count_and_log(code, message, client[0] if client else None, status)
        body: dict[str, Any] = {"errors": [{"message": message, "extensions": {"code": code}}]}
        await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)

    def _count_and_log(self, code: str, message: str, address: str | None, status: int) -> None:
        if self._metrics is not None:
            self._metrics.rejections.labels(code).inc()
        logger.info(
            "refused %s: %s",
            code,
            message,
            extra={"fields": {"status": status, "error_codes": [code], "address": address}},
        )

    def _is_ide_page(self, scope: Scope, headers: Headers) -> bool:
        params = QueryParams(scope.get("query_string", b""))
        return self._settings.graphiql and asks_for_ide(scope["method"], params, headers)


class ConnectionAuth:
    """A WebSocket's authentication, done at its ``connection_init`` (see the module
    docstring): the credentials in the message's payload, else its upgrade headers."""

    CREDENTIALS = ("authorization", "x-api-key")
    """The payload's keys (any case) that carry credentials, as the HTTP headers do."""

    def __init__(self, gate: GraphQLGate, headers: Headers, address: str) -> None:
        self._gate, self._headers, self.address = gate, headers, address

    def identify(self, payload: Mapping[str, object]) -> Identity:
        """The caller's identity, or :class:`Unauthenticated` (budget charged)."""
        given = {key.lower(): value for key, value in payload.items() if isinstance(key, str)}
        credentials = [(name, given[name]) for name in self.CREDENTIALS if name in given]
        if not credentials:
            return self._gate.identify_connection(self._headers, self.address)
        raw: list[tuple[bytes, bytes]] = []
        for name, value in credentials:
            if not isinstance(value, str) or not value.isascii():
                problem = f"'{name}' in connection_init must be an ASCII string"
                return self._gate.identify_connection(self._headers, self.address, problem)
            raw.append((name.encode(), value.encode()))
        return self._gate.identify_connection(Headers(raw=raw), self.address)

    def charge(self, identity: Identity) -> float:
        """Charge one operation to the caller's request budget (GATEWAY_RATE_LIMIT)."""
        return self._gate.charge(identity)


def _origin_allowed(origin: str, host: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a browser page on ``origin`` may open a WebSocket to ``host``: the same
    host (and port), or an origin listed exactly (``GATEWAY_CORS_ORIGINS``)."""
    normalized = origin.strip().lower().rstrip("/")
    if normalized in {entry.lower().rstrip("/") for entry in allowed}:
        return True
    parts = urlsplit(normalized)
    return host is not None and parts.scheme in ("http", "https") and parts.netloc == host.lower()


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
