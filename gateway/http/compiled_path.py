"""The compiled path: reads a compiled plan covers, answered from the store by the view.

After the response cache's fast path (:mod:`gateway.http.fast_path`) missed, a request
whose document is known and valid and whose operation a plan covers
(:mod:`gateway.schema.compiled_plan`) is answered here: the plan reads the store and
builds the data, and this module writes what strawberry's way would: the same JSON
bytes, status, media type and caching headers, the request's log line and metrics. A
clean answer is kept in the response cache (under the key the fast path looks up) the
second time its key is seen (:mod:`gateway.schema.second_sight`: a read nobody repeats
never fills the cache), and an answer kept there is served as strawberry's extension
would serve it. Authentication, rate limits and the security gate ran before, as for
every request. Anything else, or anything the plan cannot answer exactly (it raises
:class:`~gateway.schema.compiled_plan.Fallback` before it changes anything), goes the
long way: strawberry, the reference.

Most such reads are answered before the view: the hot path (:mod:`gateway.http.hot_path`)
calls :meth:`CompiledPath.run` on a response-cache miss, below Starlette's routing, and
writes the same answer; the view's :meth:`CompiledPath.answer` serves what it passes over.

Off (``GATEWAY_COMPILED_PLANS=false``), with persisted-only documents (the registry
decides what runs), and while OpenTelemetry records spans (each operation's span is
strawberry's extension's).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway import http_caching
from gateway.http.negotiation import Exchange
from gateway.http_caching import CachePolicy
from gateway.media_types import content_type
from gateway.observability import request_log
from gateway.runtime import Runtime, runtime_of
from gateway.schema.compiled_plan import Fallback
from gateway.schema.document_budget import CostLimits, RequestBudget
from gateway.schema.document_cache import Documents
from gateway.schema.response_cache import CachedAnswer, Operation, ResponseCache, operation_of
from gateway.schema.second_sight import SecondSight
from gateway.security.identity import Identity

try:
    from opentelemetry import trace
except ImportError:  # pragma: no cover - depends on the installed extras
    trace = None  # type: ignore[assignment]

TRIED_STATE: Final = "gateway.compiled_tried"
"""``scope["state"]`` key set by the hot path when it ran this request's plan and the plan
fell back: the view does not run it a second time."""


class CompiledPath:
    """Answers the view's requests that a compiled plan covers (see the module docstring)."""

    def __init__(
        self,
        documents: Documents,
        answers: ResponseCache,
        caching: CachePolicy,
        limits: CostLimits,
        clock: Callable[[], float],
    ) -> None:
        self._documents = documents
        self._answers = answers
        self._caching = caching
        self._limits = limits
        self._clock = clock
        self._sightings = SecondSight()
        self.answered = 0
        """Requests answered by running a plan (strawberry executed nothing for them)."""

    async def answer(self, request: Request, exchange: Exchange) -> Response | None:
        """The answer to ``request``, or None to go the long way."""
        state = request.scope.get("state", {})
        identity: Identity | None = state.get("identity")
        runtime = runtime_of(request)
        if identity is None or runtime is None or state.get(TRIED_STATE):
            return None  # TRIED_STATE: the hot path ran this request's plan, which fell back
        started = time.perf_counter()
        operation = await _operation(request)
        if operation is None:
            return None
        query, name, variables = operation
        compiled = self.run(runtime, identity, operation_of(query, name, variables), variables)
        if compiled is None:
            return None
        response = Response(compiled.body, media_type=content_type(exchange.media_type))
        compiled.record(runtime, identity, time.perf_counter() - started)
        if request.method != "GET" or compiled.stale:
            return http_caching.uncacheable(response)
        cache_control = self._caching.cache_control(compiled.oldest, self._clock())
        return http_caching.cacheable(
            response, cache_control, request.headers.get("if-none-match"), self._caching.etag_key
        )

    def run(
        self,
        runtime: Runtime,
        identity: Identity,
        operation: Operation,
        variables: Mapping[str, Any] | None,
        *,
        missed: bool = False,
    ) -> Compiled | None:
        """The answer to ``operation`` (``variables`` are its canonical ones, decoded) for
        ``identity``, or None to go the long way; what :meth:`answer` and the hot path
        (:mod:`gateway.http.hot_path`, below Starlette's routing) both answer with.
        ``missed``: the caller has just looked the key up in the response cache (the hot
        path, with no await since), so it is not looked up again."""
        if _tracing():
            return None
        query, name, canonical = operation
        entry = self._documents.known(query)
        if entry is None or entry.errors != ():  # new, invalid, or not validated yet
            return None
        plan = self._documents.plan(entry, name)
        if plan is None or RequestBudget(self._limits).charge(entry.cost) is not None:
            return None
        store = runtime.store
        # Kept under the operation name the request sent, as the fast path looks answers up.
        # A kept answer is served as strawberry's ResponseCaching would serve it, including
        # one it kept under the document's own name for a request that sent none.
        key = (query, name, canonical, identity.scopes)
        kept = None if missed else self._answers.get(key, store)
        if kept is None and name is None and plan.operation_name is not None:
            named = (query, plan.operation_name, canonical, identity.scopes)
            kept = self._answers.get(named, store)
        operation_name = name or plan.operation_name
        if kept is not None:
            return Compiled(kept.body, False, kept.oldest, operation_name, "response")
        try:
            data, report = plan.run(variables, identity.scopes, store, runtime.settings.max_numbers)
        except Fallback:
            return None
        self.answered += 1
        stale, oldest = bool(report), report.oldest_fetched_at
        answer: dict[str, Any] = {"data": data}
        if stale:
            answer["extensions"] = {"stale": report.as_json()}
        body = orjson.dumps(answer)
        if (
            not stale
            and report.sources
            and oldest is not None  # as ResponseCaching keeps it
            and self._sightings.seen_before(key)  # a read asked once is not worth keeping
        ):
            # The bytes CachedAnswer.of would encode again: {"data": ...}, nothing else.
            self._answers.put(
                key, CachedAnswer(body, tuple(report.sources.items()), oldest, operation_name)
            )
        return Compiled(body, stale, oldest, operation_name, "stale" if stale else "hit")


@dataclass(frozen=True, slots=True)
class Compiled:
    """A compiled path's answer: the body and what its headers and log line say."""

    body: bytes
    stale: bool
    """Whether it holds ``extensions.stale`` (then ``no-store``, whatever the method)."""
    oldest: float | None
    """When the oldest store entry it read was fetched (``Cache-Control``'s age)."""
    operation: str | None
    cache: str
    """The log line's ``cache``: ``hit`` (a plan ran), ``stale``, ``response`` (kept)."""

    def record(self, runtime: Runtime, identity: Identity, seconds: float) -> None:
        """The request's log line and metrics, as strawberry's extension writes them."""
        request_log.record(
            runtime.metrics,
            request_id=None,  # made only if the line is written
            operation=self.operation,
            outcome="stale" if self.stale else "ok",
            seconds=seconds,
            pbx_fetches=0,
            cache=self.cache,
            client=identity.name,
            codes=[],
        )


async def _operation(request: Request) -> tuple[str, str | None, Mapping[str, Any] | None] | None:
    """The request's document, operation name and variables, when it is a plain single
    operation (no batch, no persisted-query extension) in the shapes strawberry takes."""
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
        or params.get("extensions") not in (None, {})  # persisted queries, a wrong type: the view
    ):
        return None
    return query, name or None, variables  # "" names no operation (GraphQL over HTTP)


def _tracing() -> bool:
    """Whether an OpenTelemetry tracer provider records spans (strawberry's way makes the
    operation's span)."""
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
