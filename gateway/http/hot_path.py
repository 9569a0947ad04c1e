"""The hot path: a repeated read answered from the response cache below Starlette's routing.

A kept answer is a few hundred bytes ready to send, yet reaching it through the full path
(Starlette's middleware and routing, CORS, the security gate, strawberry's view, its
negotiation and :mod:`gateway.http.fast_path`) cost several times what uvicorn itself
spends on the request. :class:`HotPath` sits in front of the Starlette app
(:class:`gateway.app.GatewayApp` calls it first for ``GET`` and ``POST /graphql``) and
answers a request the response cache holds an answer for, with the same effect as the
full path:

- the same refusals first, by falling through: a header the full path reads sent twice,
  a query string or body over ``GATEWAY_MAX_BODY_BYTES``, a body in several parts, an
  ``Accept`` naming nothing this server writes, a POST body that is not JSON, failed
  authentication (the gate's 401 and its failure budget), an unusual body (see
  :mod:`gateway.http.fast_path`), a miss: the full path gets the request unchanged, its
  body replayed;
- the same caller: the gate's :class:`Authenticator` over the same two headers, and the
  answer looked up under the caller's scopes (a key that may not read PINs never gets an
  answer made for one that may);
- the same charge: with ``GATEWAY_RATE_LIMIT`` the caller's budget is charged once, after
  the lookup (a miss falls through and the gate charges it), and an empty budget gets
  the gate's own 429;
- the same answer: status, body, ``Content-Type`` from ``Accept``, ``no-store`` for POST,
  ``Cache-Control``/``ETag``/``304`` for GET (:mod:`gateway.http_caching`, the view's
  policy and key), ``Vary``, and the CORS headers through the same
  :class:`CORSMiddleware` settings when CORS is on;
- the same log line and metrics (:func:`gateway.observability.request_log.record`).

A miss is not handed on at once: when compiled plans are on, the view's compiled path
(:meth:`gateway.http.compiled_path.CompiledPath.run`: the document known and valid, its
cost within the request budget, a plan that covers it, every room fresh or servable in the
store) answers it here, with the same headers, log line (``cache`` ``hit``/``stale``),
metrics and response-cache insert as when the view runs it. With a request budget the
plan runs only while the caller has a token left (peeked; taken once the plan answered).
Anything a plan cannot answer falls through, body replayed, and the view does not run the
plan a second time (:data:`gateway.http.compiled_path.TRIED_STATE`).

What it skips is only work: ``Request`` objects, routing, header parsing into
dictionaries of strings, and decoding the body's JSON when the same bytes were answered
before (the reading of a body is kept per body, and the caller's scopes are added per
request, so a body kept for one caller is looked up for another under that caller's
scopes). ``tests/test_hot_path.py`` checks the answers against the full path's, request
for request.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Final

import orjson
from starlette.datastructures import Headers, QueryParams
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send

from gateway import http_caching
from gateway.http.compiled_path import TRIED_STATE, Compiled, CompiledPath
from gateway.http.fast_path import OPERATION_STATE, operation_of_body, operation_of_query
from gateway.http_caching import CachePolicy
from gateway.media_types import content_type, is_json_request, negotiate
from gateway.observability import request_log
from gateway.runtime import Runtime
from gateway.schema.response_cache import Operation, ResponseCache
from gateway.security.config import SecuritySettings
from gateway.security.gate import Authenticator, GraphQLGate
from gateway.security.identity import Identity
from gateway.security.rate_limit import RateLimiter
from gateway.subscriptions.multipart import wants_multipart

PATH: Final = "/graphql"
READINGS_BYTES: Final = 2 * 1024 * 1024
"""Bytes of request bodies (and query strings) whose reading is kept, with the readings:
emptied when full, so a flood of distinct documents costs a re-read, never memory."""
_SMALL_MEMO: Final = 64
"""Distinct ``Accept`` and ``Content-Type`` values whose meaning is kept."""
_NOT_ACCEPTABLE: Final = b""
_NO_STORE: Final = (
    (b"cache-control", http_caching.NO_STORE.encode()),
    (b"vary", http_caching.VARY.encode()),
)


class HotPath:
    """Answers repeated reads from ``answers`` in front of the Starlette app."""

    def __init__(
        self,
        *,
        answers: ResponseCache,
        caching: CachePolicy,
        security: SecuritySettings,
        authenticator: Authenticator,
        gate: GraphQLGate,
        requests: RateLimiter | None,
        cors: CORSMiddleware | None,
        clock: Callable[[], float],
        compiled: CompiledPath | None = None,
    ) -> None:
        self._answers = answers
        self._compiled = compiled
        self._caching = caching
        self._max_body = security.max_body_bytes
        self._authenticator = authenticator
        self._gate = gate
        self._requests = requests
        self._cors = cors
        self._clock = clock
        self._posted = _Readings(READINGS_BYTES)
        self._queried = _Readings(READINGS_BYTES)
        self._media: dict[bytes | None, bytes] = {}
        self._json: dict[bytes | None, bool] = {}
        self.answered = 0
        """Requests answered here from the response cache (for tests)."""
        self.compiled = 0
        """Requests answered here by a compiled plan (or its kept answer under the
        document's own name): the rest went the full path."""

    @property
    def readings_bytes(self) -> int:
        """Bytes the kept readings of bodies and query strings count for (bounded)."""
        return self._posted.held + self._queried.held

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Answer the HTTP request ``scope`` and return None, or return the channel the
        full path must read it from (``receive``, or the body read here, replayed)."""
        started = time.perf_counter()
        method = scope["method"]
        if (method != "POST" and method != "GET") or scope.get("root_path"):
            return receive
        state: dict[str, object] | None = scope.get("state")
        if state is None:
            return receive
        runtime = state.get("runtime")
        if not isinstance(runtime, Runtime):
            return receive  # not started: the full path says so
        raw = scope["headers"]
        headers = dict(raw)
        if len(headers) != len(raw):
            return receive  # a header sent twice: the full path reads the first of each
        query_string: bytes = scope.get("query_string", b"")
        if len(query_string) > self._max_body:
            return receive
        media = self._content_type(headers.get(b"accept"))
        if media is _NOT_ACCEPTABLE:
            return receive
        if method == "POST" and (query_string or not self._is_json(headers.get(b"content-type"))):
            return receive
        message = await receive()  # from here on, falling through replays it
        body = message.get("body", b"")
        if message["type"] != "http.request" or message.get("more_body", False):
            return _replay(message, receive)  # a disconnect, or a body in parts: the gate reads it
        if len(body) > self._max_body or (body and method == "GET"):
            return _replay(message, receive)
        readings = self._posted if method == "POST" else self._queried
        seen = body if method == "POST" else query_string
        operation = readings.get(seen)
        known = operation is not None
        if operation is None:
            if method == "POST":
                operation = operation_of_body(body)
            else:
                operation = operation_of_query(QueryParams(query_string))
            if operation is None:
                return _handing_on(state, None, _replay(message, receive))
        client = scope.get("client")
        address = client[0] if client else "unknown"
        authorization = headers.get(b"authorization")
        api_key = headers.get(b"x-api-key")
        try:
            identity = self._authenticator.identify_credentials(
                authorization.decode("latin-1") if authorization is not None else None,
                api_key.decode("latin-1") if api_key is not None else None,
                address,
            )
        except Exception:  # Unauthenticated, or worse: the gate answers, as it always has
            return _replay(message, receive)
        kept = self._answers.get((*operation, identity.scopes), runtime.store)
        compiled: Compiled | None = None
        if kept is None:
            compiled = self._run_plan(state, runtime, identity, operation)
            if compiled is None:
                return _handing_on(state, operation, _replay(message, receive))
        elif not known:
            readings.put(seen, operation)  # only answered bodies: no mutation's variables
        if self._cors is not None:
            send = functools.partial(
                self._cors.send, send=send, request_headers=Headers(scope=scope)
            )
        if self._requests is not None:
            wait = self._requests.take(identity.name)  # a plan's answer: allowed (_run_plan)
            if wait > 0:
                replay = _replay(message, receive)
                await self._gate.refuse_rate_limited(scope, replay, send, identity, wait)
                return None
        if compiled is not None:
            answer, oldest, stale = compiled.body, compiled.oldest, compiled.stale
        else:
            assert kept is not None
            answer, oldest, stale = kept.body, kept.oldest, False
        status = 200
        if method == "POST" or stale:
            start = [(b"content-length", b"%d" % len(answer)), (b"content-type", media), *_NO_STORE]
        else:
            cache_control = self._caching.cache_control(oldest, self._clock())
            etag = http_caching.etag_for(answer, media.decode(), self._caching.etag_key)
            start = [
                (b"cache-control", cache_control.encode()),
                (b"etag", etag.encode()),
                (b"vary", _NO_STORE[1][1]),
            ]
            if_none_match = headers.get(b"if-none-match")
            if if_none_match is not None and http_caching.matches(
                if_none_match.decode("latin-1"), etag
            ):
                status, answer = 304, b""
            else:
                start[:0] = [(b"content-length", b"%d" % len(answer)), (b"content-type", media)]
        if compiled is not None:
            compiled.record(runtime, identity, time.perf_counter() - started)
            self.compiled += 1
        else:
            assert kept is not None
            request_log.record(
                runtime.metrics,
                request_id=None,
                operation=kept.operation,
                outcome="ok",
                seconds=time.perf_counter() - started,
                pbx_fetches=0,
                cache="response",
                client=identity.name,
                codes=[],
            )
            self.answered += 1
        await send({"type": "http.response.start", "status": status, "headers": start})
        await send({"type": "http.response.body", "body": answer})
        return None

    def _run_plan(
        self,
        state: dict[str, object],
        runtime: Runtime,
        identity: Identity,
        operation: Operation,
    ) -> Compiled | None:
        """A compiled plan's answer to a response-cache miss, or None to fall through.

        Only when the full path would reach the plan: with a request budget, one the
        caller has a token left in (peeked here, taken by the caller once the plan has
        answered; a refused request goes the full path, whose gate refuses it)."""
        compiled = self._compiled
        if compiled is None:
            return None
        if self._requests is not None and not self._requests.allows(identity.name):
            return None
        try:
            variables = orjson.loads(operation[2])  # the canonical JSON the key holds
        except orjson.JSONDecodeError:
            return None
        answer = compiled.run(runtime, identity, operation, variables, missed=True)
        if answer is None:
            state[TRIED_STATE] = True  # the view's compiled path would fall back too
        return answer

    def _content_type(self, accept: bytes | None) -> bytes:
        """The ``Content-Type`` of an answer for ``accept``, or ``_NOT_ACCEPTABLE``."""
        known = self._media.get(accept)
        if known is not None:
            return known
        text = accept.decode("latin-1") if accept is not None else None
        # An Accept asking for a multipart subscription stream: the full path streams it.
        media = None if wants_multipart(text) else negotiate(text)
        value = _NOT_ACCEPTABLE if media is None else content_type(media).encode("latin-1")
        if len(self._media) >= _SMALL_MEMO:
            self._media.clear()
        self._media[accept] = value
        return value

    def _is_json(self, value: bytes | None) -> bool:
        known = self._json.get(value)
        if known is not None:
            return known
        verdict = is_json_request(value.decode("latin-1") if value is not None else None)
        if len(self._json) >= _SMALL_MEMO:
            self._json.clear()
        self._json[value] = verdict
        return verdict


class _Readings:
    """What request bytes ask the response cache for, kept within a byte budget and
    emptied when full: cheaper than ordering entries by use on every hit, and a body is
    only kept once it was answered from the cache (no mutation's variables stay here)."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: dict[bytes, Operation] = {}

    @property
    def held(self) -> int:
        return self._bytes

    def get(self, raw: bytes) -> Operation | None:
        return self._entries.get(raw)

    def put(self, raw: bytes, operation: Operation) -> None:
        size = 2 * len(raw) + len(operation[2]) + 256  # the body, its document, the rest
        if self._bytes + size > self._max_bytes:
            self._entries.clear()
            self._bytes = 0
            if size > self._max_bytes:
                return
        self._entries[raw] = operation
        self._bytes += size


def _handing_on(state: dict[str, object], operation: Operation | None, replay: Receive) -> Receive:
    """Fall through, leaving the view's fast path this request's reading (no second one)."""
    state[OPERATION_STATE] = operation
    return replay


def _replay(first: Message, receive: Receive) -> Receive:
    """``first`` again, then the real channel: the full path reads what was read here."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return first

    return replay
