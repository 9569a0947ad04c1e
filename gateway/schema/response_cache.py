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
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from gateway.store import ConferenceStore

Key = tuple[str, str | None, str, frozenset[str]]


@dataclass(slots=True)
class CachedAnswer:
    """A kept answer, and its encoded body once someone needed it."""

    data: dict[str, Any]
    sources: tuple[tuple[str, int], ...]
    """Store key -> version of the answer it was built from."""
    oldest: float
    body: bytes | None = field(default=None)


def key_for(
    query: str,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    scopes: frozenset[str],
) -> Key:
    """The cache key; ``None`` and ``{}`` variables are the same request."""
    canonical = json.dumps(variables or {}, sort_keys=True, separators=(",", ":"), default=str)
    return (query, operation_name or None, canonical, scopes)


class ResponseCache:
    """The bounded LRU of kept answers, checked against the store on every read."""

    def __init__(self, maxsize: int = 256) -> None:
        self._answers: LRUCache[Key, CachedAnswer] = LRUCache(maxsize)

    def get(self, key: Key, store: ConferenceStore) -> CachedAnswer | None:
        """The kept answer for ``key`` if every source is still current, else None."""
        kept = self._answers.get(key)
        if kept is None:
            return None
        if all(store.current(source) == version for source, version in kept.sources):
            return kept
        self._answers.pop(key, None)
        return None

    def put(self, key: Key, answer: CachedAnswer) -> None:
        self._answers[key] = answer


class ResponseCaching(SchemaExtension):
    """Answers from the cache instead of executing; keeps clean answers of queries."""

    def __init__(self, cache: ResponseCache) -> None:
        self._cache = cache

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        app = context.context
        store, report = getattr(app, "store", None), getattr(app, "stale", None)
        key = self._key()
        if key is None or store is None or report is None:
            yield
            return
        kept = self._cache.get(key, store)
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
            and report.sources
            and report.oldest_fetched_at is not None
        ):
            sources = tuple(report.sources.items())
            self._cache.put(key, CachedAnswer(result.data, sources, report.oldest_fetched_at))

    def _key(self) -> Key | None:
        context = self.execution_context
        try:
            if context.operation_type is not OperationType.QUERY or not context.query:
                return None
            identity = getattr(context.context, "identity", None)
            scopes = identity.scopes if identity is not None else frozenset()
            return key_for(context.query, context.operation_name, context.variables, scopes)
        except (RuntimeError, TypeError, ValueError):
            return None


def response_caching(cache: ResponseCache) -> Callable[[], ResponseCaching]:
    """The extension factory over one shared cache."""
    return lambda: ResponseCaching(cache)
