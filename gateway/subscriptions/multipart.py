"""Subscriptions over one HTTP response: the multipart protocol Apollo Client and urql speak.

The request is an ordinary GraphQL POST (or GET) through the same gate as a query: the
body limit, authentication by headers, the request budget. The answer is
``multipart/mixed; boundary=graphql; subscriptionSpec=1.0``: one part per update,
``{"payload": {"data": ...}}``, and a ``{}`` heartbeat part every ``GATEWAY_LIVE_KEEPALIVE``
seconds, so that proxies see traffic and close nothing idle. Never one first (those due
before the first update are dropped): urql 6's ``fetchSubscriptions`` reads a first part
without ``data`` or ``errors`` as an error ("No Content") and ends the subscription, so
the first part is the INITIAL update.
``Cache-Control: no-store`` and ``X-Accel-Buffering: no`` keep caches and nginx from
holding parts back.

Which requests stream (:func:`wants_multipart`): Apollo Client asks with
``Accept: multipart/mixed;subscriptionSpec=1.0, application/json``; urql 6's
``fetchSubscriptions`` with ``Accept: text/event-stream, multipart/mixed`` (no
``subscriptionSpec``, and no JSON type). Either streams; urql's query ``Accept`` (JSON
types first, multipart last) and Apollo's ``@defer`` ``deferSpec`` stay plain JSON.

The body opens with a boundary line (CRLF ``--graphql``, as Apollo's router writes it):
strawberry starts straight with the first part, which a strict reader takes for a preamble.

A stream opened with a JWT ends when the token expires: a last part with the error
``UNAUTHENTICATED`` in the same shape, then the closing boundary.

A subscriber that fell behind gets a last part with the protocol's transport-level error
shape, ``{"payload": null, "errors": [{... "code": "SLOW_CONSUMER"}]}``, then the closing
boundary: the response ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from strawberry.http import GraphQLHTTPResponse
from strawberry.http.streaming import (
    MULTIPART_SUBSCRIPTION_BOUNDARY,
    JSONEncoder,
    MultipartSubscriptionTransport,
)

from gateway.error_code import ErrorCode
from gateway.subscriptions.errors import coded

_JSON_TYPES = ("application/json", "application/graphql-response+json", "application/*", "*/*")


def wants_multipart(accept: str | None) -> bool:
    """Whether a request's ``Accept`` asks for a multipart subscription stream."""
    multipart = False
    json_too = False
    for part in (accept or "").split(","):
        media_type, *params = (piece.strip().lower() for piece in part.split(";"))
        if media_type == "multipart/mixed":
            if any(p.replace(" ", "").startswith("subscriptionspec=") for p in params):
                return True
            multipart = True
        elif media_type in _JSON_TYPES:
            json_too = True
    return multipart and not json_too


class GatewayMultipartTransport(MultipartSubscriptionTransport):
    """strawberry's multipart subscription transport with the module docstring's rules;
    :func:`multipart_transport` binds the heartbeat interval."""

    send_initial_heartbeat = False  # urql ends a subscription whose first part is ``{}``

    @property
    def headers(self) -> Mapping[str, str]:
        return {
            **super().headers,
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx would buffer the parts otherwise
        }

    def accepts(self, accept: str) -> bool:
        return wants_multipart(accept)

    def encode_next(self, response: GraphQLHTTPResponse, encode_json: JSONEncoder) -> str:
        if _is_slow_consumer(response):
            # The protocol's transport-level error: no payload, the errors beside it.
            final: dict[str, Any] = {"payload": None, "errors": response.get("errors")}
            return self.encode_multipart_data(final, encode_json)
        return super().encode_next(response, encode_json)


class MultipartBody:
    """What the gateway adds around strawberry's multipart body (one per response)."""

    def __init__(self, transport: GatewayMultipartTransport, encode_json: JSONEncoder) -> None:
        self._heartbeat = transport.heartbeat_message(encode_json)
        expired = coded("the bearer token has expired", ErrorCode.UNAUTHENTICATED)
        self._expired = (
            transport.encode_multipart_data({"payload": None, "errors": [expired]}, encode_json)
            + transport.encode_complete()
        )

    async def stream(
        self, parts: AsyncIterator[str], expires_at: float | None
    ) -> AsyncIterator[str]:
        """``parts`` after the opening boundary line, without the heartbeats that come
        before the first update (a slow first read, the PBX answering late, would otherwise
        put one first, and urql end the subscription on it; the headers and the opening
        line are traffic enough for a proxy meanwhile). A stream opened with a JWT ends
        when the token expires, with a last part ``UNAUTHENTICATED``, as a WebSocket closes
        4401 then."""
        yield f"\r\n--{MULTIPART_SUBSCRIPTION_BOUNDARY}"
        updated = False
        iterator = aiter(parts)
        try:
            while True:
                try:
                    if expires_at is None:
                        part = await anext(iterator)
                    else:  # a JWT's exp is wall time
                        left = max(0.0, expires_at - time.time())
                        part = await asyncio.wait_for(anext(iterator), left)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    yield self._expired
                    return
                if part == self._heartbeat and not updated:
                    continue
                updated = True
                yield part
        finally:
            closing = getattr(iterator, "aclose", None)
            if closing is not None:
                await closing()


def is_multipart(headers: Mapping[str, str]) -> bool:
    """Whether a streaming response's headers are this transport's."""
    return any(
        name.lower() == "content-type" and value.startswith("multipart/mixed")
        for name, value in headers.items()
    )


def multipart_transport(heartbeat_interval: float) -> type[GatewayMultipartTransport]:
    """The transport class strawberry instantiates, with ``heartbeat_interval`` bound."""
    return type(
        "BoundMultipartTransport",
        (GatewayMultipartTransport,),
        {"heartbeat_interval": heartbeat_interval},
    )


def _is_slow_consumer(response: GraphQLHTTPResponse) -> bool:
    return response.get("data") is None and any(
        (error.get("extensions") or {}).get("code") == ErrorCode.SLOW_CONSUMER
        for error in response.get("errors") or ()
        if isinstance(error, dict)
    )
