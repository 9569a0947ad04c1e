"""Answers to identical read operations, kept while the data they were built from is.

Even with parsing and validation cached, executing a query costs graphql-core about 10 µs
per field: a list of 10,000 rooms takes a second of CPU to build the same answer the
previous request got. So a clean answer (no errors, nothing stale) to a query is kept,
keyed by the document text, operation name, variables and the caller's scopes (what a
caller may see depends on them: PINs), together with its sources: the store keys it read
and the version of each answer. A later identical request takes it only if every source is
still the store's current fresh answer (:meth:`ConferenceStore.current`); a refresh, an
expiry or a change through the mutation makes it a miss. Authentication, rate limits and
the request log all still run: only execution is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

Key = tuple[str, str | None, str, frozenset[str]]


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    data: dict[str, Any]
    sources: tuple[tuple[str, int], ...]
    """Store key -> version of the answer it was built from."""
    oldest: float


class ResponseCache(SchemaExtension):
    """Serves a kept answer instead of executing; keeps clean answers of queries."""

    def __init__(self, cache: LRUCache[Key, CachedAnswer]) -> None:
        self._cache = cache

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        app = context.context
        store, report = getattr(app, "store", None), getattr(app, "stale", None)
        key = self._key()
        if key is None or store is None or report is None:
            yield
            return
        kept = self._cache.get(key)
        if kept is not None and all(store.current(k) == v for k, v in kept.sources):
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
            self._cache[key] = CachedAnswer(result.data, sources, report.oldest_fetched_at)

    def _key(self) -> Key | None:
        context = self.execution_context
        try:
            if context.operation_type is not OperationType.QUERY or not context.query:
                return None
            variables = json.dumps(context.variables or {}, sort_keys=True, default=str)
        except (RuntimeError, TypeError, ValueError):
            return None
        identity = getattr(context.context, "identity", None)
        scopes = identity.scopes if identity is not None else frozenset()
        return (context.query, context.operation_name, variables, scopes)


def response_cache(maxsize: int = 256) -> Callable[[], ResponseCache]:
    """The extension factory for one schema, with its own bounded cache."""
    cache: LRUCache[Key, CachedAnswer] = LRUCache(maxsize)
    return lambda: ResponseCache(cache)
