"""The response cache's fast path: a kept answer served before any GraphQL work.

A request whose document, operation name, variables and caller's scopes match an answer
the :class:`gateway.schema.response_cache.ResponseCache` keeps, every source of which is
still the store's current fresh answer, is answered with those bytes: no parsing, no
validation, no execution, no store lookup. Authentication, rate limits, the log line and
the metrics still happen (the security gate ran before; the log line is written here). Anything
unusual goes the long way, where the full rules apply: a body or ``variables`` that is
not JSON, members of the wrong type, ``extensions`` (persisted queries), a miss.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway import http_caching
from gateway.http.negotiation import Exchange
from gateway.http_caching import CachePolicy
from gateway.media_types import content_type
from gateway.observability import request_log
from gateway.runtime import runtime_of
from gateway.schema.response_cache import ResponseCache, key_for
from gateway.security.identity import Identity


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
