"""Answers to identical read operations, kept while the data they were built from is.

Even with parsing and validation cached, executing a query costs graphql-core about 10 µs
per field: a list of 10,000 rooms takes a second of CPU to build the same answer the
previous request got. So a clean answer (no errors, nothing stale) to a query is kept,
keyed by the document text, operation name, variables and the caller's scopes (what a
caller may see depends on them: PINs), together with its sources: the store keys it read
and the version of each answer. A later identical request takes it only if every source
is still the store's current fresh answer (:meth:`ConferenceStore.current`); a refresh,
an expiry or a change through the mutation makes it a miss.

Two readers share one :class:`ResponseCache`: the HTTP view looks a request up before any
GraphQL work (the fast path: authentication, rate limits, the log line and metrics still
happen, only GraphQL is skipped), and the :class:`ResponseCaching` extension fills it, and
also answers from it when a request reaches execution (a persisted query, say).

Memory is bounded by bytes, not by a count of answers: with 10,000 rooms one answer is
megabytes, and every distinct document (a comment, a space) is another answer, so 260
variants took a process from 61 MB to 1 GB. An answer is kept as the bytes it is served
as (decoded only for the rare reader that needs the data), the cache holds at most
``max_bytes`` of them (answer, document and variables counted), least recently used
first out, an answer over an eighth of the budget is not kept at all, and an answer
leaves the cache when the data it was built from stops being fresh (``ttl``), read or
not (the storage: :mod:`gateway.schema.kept_answers`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from gateway.schema.context import gateway_context
from gateway.schema.kept_answers import KeptAnswers
from gateway.settings import Settings
from gateway.store import ConferenceStore

Key = tuple[str, str | None, str, frozenset[str]]
Operation = tuple[str, str | None, str]
"""A key less the caller's scopes: document, operation name, canonical variables. It
depends on the request alone, so a reader may keep it per request body (see
:mod:`gateway.http.hot_path`); the scopes are added per caller."""

LARGEST_SHARE: Final = 8
"""An answer larger than ``max_bytes / LARGEST_SHARE`` is not kept: it would push out
most of what the others need for one document."""
_ENTRY_OVERHEAD: Final = 512
"""Bytes counted per entry beyond its answer, document and variables: the Python objects
around them (the entry and its place in the LRU and the expiry heap, the key tuple)."""
_SOURCE_OVERHEAD: Final = 128
"""Bytes counted per store key an answer was built from (its tuple, number and version)."""


@dataclass(slots=True)
class CachedAnswer:
    """A kept answer, as the bytes it is served as (``{"data": ...}``)."""

    body: bytes
    sources: tuple[tuple[str, int], ...]
    """Store key -> version of the answer it was built from."""
    oldest: float
    operation: str | None = None
    """The operation's name as the executed request logged it (the document's own name
    when the request named none), so a request answered from here logs the same."""

    @classmethod
    def of(
        cls,
        data: dict[str, Any],
        sources: tuple[tuple[str, int], ...],
        oldest: float,
        operation: str | None = None,
    ) -> CachedAnswer:
        """Encode ``data`` once, as the HTTP view would send it."""
        return cls(orjson.dumps({"data": data}), sources, oldest, operation)

    @property
    def data(self) -> dict[str, Any]:
        """The answer's ``data``, decoded (only a request reaching execution needs it)."""
        decoded: dict[str, Any] = orjson.loads(self.body)["data"]
        return decoded


def operation_of(
    query: str, operation_name: str | None, variables: Mapping[str, Any] | None
) -> Operation:
    """The key's request part (:data:`Operation`)."""
    return key_for(query, operation_name, variables, frozenset())[:3]


def key_for(
    query: str,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    scopes: frozenset[str],
) -> Key:
    """The cache key; ``None`` and ``{}`` variables are the same request."""
    return (query, operation_name or None, canonical_variables(variables), scopes)


def canonical_variables(variables: Mapping[str, Any] | None) -> str:
    """``variables`` as one text per value: JSON with sorted keys (orjson, a tenth of
    json's cost on every read that misses; json only for what orjson cannot encode, such
    as an integer past 64 bits, which orjson's text never holds, so no two values meet)."""
    if not variables:
        return "{}"
    try:
        return orjson.dumps(variables, option=orjson.OPT_SORT_KEYS, default=str).decode()
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(variables, sort_keys=True, separators=(",", ":"), default=str)


class ResponseCache:
    """Kept answers within a byte budget, checked against the store on every read."""

    def __init__(
        self,
        max_bytes: int = Settings.response_cache_bytes,
        *,
        ttl: float = Settings.cache_ttl,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_bytes // LARGEST_SHARE
        self.too_large = 0
        """Answers not kept because they exceeded ``max_entry_bytes``."""
        self._ttl = ttl
        self._answers: KeptAnswers[Key, CachedAnswer] = KeptAnswers(max(max_bytes, 1), clock)

    def get(self, key: Key, store: ConferenceStore) -> CachedAnswer | None:
        """The kept answer for ``key`` if every source is still current, else None."""
        self._answers.expire()  # no answer outlives its data, whether read or not
        kept = self._answers.get(key)
        if kept is None:
            return None
        if all(store.current(source) == version for source, version in kept.sources):
            return kept
        self._answers.pop(key)
        return None

    def put(self, key: Key, answer: CachedAnswer) -> None:
        """Keep ``answer`` unless it is too large for its share of the budget."""
        size = (
            len(answer.body)
            + len(key[0])
            + len(key[2])
            + _ENTRY_OVERHEAD
            + _SOURCE_OVERHEAD * len(answer.sources)
        )
        if size > self.max_entry_bytes:
            self.too_large += 1
            return
        # orjson's bytes keep the whole buffer they grew in (4 KB for a 1 KB answer, 32 KB
        # for 3 KB): kept as they come, the budget's answers took about four times the
        # memory it counts. A copy is exactly its length, and costs one memcpy per answer.
        answer.body = bytes(memoryview(answer.body))
        self._answers.put(key, answer, size, answer.oldest + self._ttl)  # the data's freshness

    @property
    def bytes_held(self) -> int:
        """The bytes the kept answers count for (never above ``max_bytes``)."""
        self._answers.expire()
        return int(self._answers.currsize)

    @property
    def evictions(self) -> int:
        """Answers dropped, least recently used first, to make room for another."""
        return self._answers.evictions

    @property
    def entries(self) -> int:
        """Answers kept now (expired ones dropped first)."""
        self._answers.expire()
        return len(self._answers)


class ResponseCaching(SchemaExtension):
    """Answers from the cache instead of executing; keeps clean answers of queries."""

    def __init__(self, cache: ResponseCache) -> None:
        self._cache = cache

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        app = gateway_context(context.context)
        key = self._key(app.identity.scopes) if app is not None else None
        if key is None or app is None:
            yield
            return
        report = app.stale
        kept = self._cache.get(key, app.store)
        if kept is not None:
            context.result = GraphQLExecutionResult(data=kept.data, errors=None)
            for source, version in kept.sources:
                report.served(source, kept.oldest, version)
            app.response_cached = True
            yield
            return
        yield
        result = context.result
        if (
            isinstance(result, GraphQLExecutionResult)
            and not result.errors
            and isinstance(result.data, dict)
            and not report  # nothing served stale
            and not app.live_read  # live data lives seconds, not the store's TTL
            and report.sources
            and report.oldest_fetched_at is not None
        ):
            sources = tuple(report.sources.items())
            name = context.operation_name  # the document is parsed: this cannot fail now
            answer = CachedAnswer.of(result.data, sources, report.oldest_fetched_at, name)
            self._cache.put(key, answer)

    def _key(self, scopes: frozenset[str]) -> Key | None:
        context = self.execution_context
        try:
            if context.operation_type is not OperationType.QUERY or not context.query:
                return None
            name = provided_operation_name(context)
            return key_for(context.query, name, context.variables, scopes)
        except (RuntimeError, TypeError, ValueError):
            return None


STRAWBERRY_PROVIDED_NAME: Final = "_provided_operation_name"
"""strawberry's private attribute for the ``operationName`` the request sent. Answers are
kept under it, not under ``operation_name`` (which falls back to the document's own name):
the HTTP fast paths look answers up by what the request sent, without parsing the
document, so ``query Wall {...}`` sent without ``operationName`` must be kept under None.
tests/test_hot_path.py fails if strawberry renames it (the answer would still be right,
only never found before execution)."""


def provided_operation_name(context: ExecutionContext) -> str | None:
    """The ``operationName`` the request sent (``""`` is none), as the HTTP side keys it."""
    name = getattr(context, STRAWBERRY_PROVIDED_NAME, context.operation_name)
    return name if isinstance(name, str) and name else None


def response_caching(cache: ResponseCache) -> Callable[[], ResponseCaching]:
    """The extension factory over one shared cache."""
    return lambda: ResponseCaching(cache)
