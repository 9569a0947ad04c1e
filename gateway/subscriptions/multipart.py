"""Subscriptions over one HTTP response: the multipart protocol Apollo Client and urql speak.

The request is an ordinary GraphQL POST (or GET) through the same gate as a query: the
body limit, authentication by headers, the request budget. The answer is
``multipart/mixed; boundary=graphql; subscriptionSpec=1.0``: one part per update,
``{"payload": {"data": ...}}``, and a ``{}`` heartbeat part at once and every
``GATEWAY_LIVE_KEEPALIVE`` seconds, so that proxies see traffic and close nothing idle.
``Cache-Control: no-store`` and ``X-Accel-Buffering: no`` keep caches and nginx from
holding parts back.

Which requests stream (:func:`wants_multipart`): Apollo Client asks with
``Accept: multipart/mixed;subscriptionSpec=1.0, application/json``; urql 6's
``fetchSubscriptions`` with ``Accept: text/event-stream, multipart/mixed`` (no
``subscriptionSpec``, and no JSON type). Either streams; urql's query ``Accept`` (JSON
types first, multipart last) and Apollo's ``@defer`` ``deferSpec`` stay plain JSON.

The body opens with a boundary line (``\r\n--graphql``, as Apollo's router writes it):
strawberry starts straight with the first part, which a strict reader takes for a preamble.

A subscriber that fell behind gets a last part with the protocol's transport-level error
shape, ``{"payload": null, "errors": [{... "code": "SLOW_CONSUMER"}]}``, then the closing
boundary: the response ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from strawberry.http import GraphQLHTTPResponse
from strawberry.http.streaming import (
    MULTIPART_SUBSCRIPTION_BOUNDARY,
    JSONEncoder,
    MultipartSubscriptionTransport,
)

from gateway.error_code import ErrorCode

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


async def with_opening_boundary(parts: AsyncIterator[str]) -> AsyncIterator[str]:
    """``parts`` (strawberry's multipart body) after the opening boundary line."""
    yield f"\r\n--{MULTIPART_SUBSCRIPTION_BOUNDARY}"
    async for part in parts:
        yield part


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
