"""The response cache's fast path: a kept answer served before any GraphQL work.

A request whose document, operation name, variables and caller's scopes match an answer
the :class:`gateway.schema.response_cache.ResponseCache` keeps, every source of which is
still the store's current fresh answer, is answered with those bytes: no parsing, no
validation, no execution, no store lookup. Authentication, rate limits, the log line and
the metrics still happen (the security gate ran before; the log line is written here). Anything
unusual goes the long way, where the full rules apply: a body or ``variables`` that is
not JSON, members of the wrong type, ``extensions`` (persisted queries), a miss.

Most repeated reads never get here: :mod:`gateway.http.hot_path` answers them below
Starlette's routing. This one serves what that one passes over (a header it does not
read, a body in several parts), and every request when it is off; the two read a request
the same way (:func:`operation_of_body`, :func:`operation_of_query`), and when the hot path
has already read the body it hands its reading on (:data:`OPERATION_STATE`), so a miss
does not decode the JSON twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway import http_caching
from gateway.http.negotiation import Exchange
from gateway.http_caching import CachePolicy
from gateway.media_types import content_type
from gateway.observability import request_log
from gateway.runtime import runtime_of
from gateway.schema.response_cache import Operation, ResponseCache, operation_of
from gateway.security.identity import Identity

OPERATION_STATE: Final = "gateway.operation"
"""``scope["state"]`` key: the :data:`Operation` the hot path read from this request's
body or query string (None: not one the response cache could answer)."""


def operation_of_body(body: bytes) -> Operation | None:
    """The response-cache operation a POST body asks for, or None when it is unusual."""
    try:
        params = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(params, dict):
        return None
    return _operation(params, params.get("variables"))


def operation_of_query(params: Mapping[str, Any]) -> Operation | None:
    """The response-cache operation a GET's query parameters ask for, or None."""
    variables: Any = params.get("variables")
    try:
        variables = orjson.loads(variables) if variables else None
    except orjson.JSONDecodeError:
        return None
    return _operation(params, variables)


def _operation(params: Mapping[str, Any], variables: Any) -> Operation | None:
    query, name = params.get("query"), params.get("operationName")
    if (
        not isinstance(query, str)
        or not isinstance(name, str | None)
        or not isinstance(variables, dict | None)
        or params.get("extensions") not in (None, {})  # persisted queries, a wrong type: the view
    ):
        return None
    return operation_of(query, name, variables)


class FastPath:
    """Answers from ``answers`` for the view, with the view's caching headers."""

    def __init__(
        self, answers: ResponseCache, caching: CachePolicy, clock: Callable[[], float]
    ) -> None:
        self._answers = answers
        self._caching = caching
        self._clock = clock

    async def answer(self, request: Request, exchange: Exchange) -> Response | None:
        """The kept answer to ``request``, or None to go the long way."""
        state = request.scope.get("state", {})
        identity: Identity | None = state.get("identity")
        runtime = runtime_of(request)
        if identity is None or runtime is None:
            return None
        started = time.perf_counter()
        if OPERATION_STATE in state:
            operation: Operation | None = state[OPERATION_STATE]
        elif request.method == "GET":
            operation = operation_of_query(request.query_params)
        else:
            operation = operation_of_body(await request.body())
        if operation is None:
            return None
        kept = self._answers.get((*operation, identity.scopes), runtime.store)
        if kept is None:
            return None
        response = Response(kept.body, media_type=content_type(exchange.media_type))
        request_log.record(
            runtime.metrics,
            request_id=None,  # made only if the line is written (it costs a few µs)
            operation=kept.operation,
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
