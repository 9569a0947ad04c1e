"""Parse and validate each distinct GraphQL document once.

Profiling the hot path (``make bench``) showed graphql-core spending about 70% of a
cached single-room query validating the same document again, and parsing it again.
Clients send a handful of distinct documents (their code's queries), so the gateway keeps
the parsed document and its validation errors per query text in a bounded LRU cache, and
the next request with the same text skips both steps.

Safe because validation depends only on the document and the schema (with its fixed rule
set: depth, alias and token limits, introspection switch): never on variables or on who
asks. The cache holds at most ``maxsize`` documents, so unique texts cannot grow memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from cachetools import LRUCache
from graphql import DocumentNode, GraphQLError
from strawberry.extensions import SchemaExtension

Cached = tuple[DocumentNode, tuple[GraphQLError, ...]]


class DocumentCache(SchemaExtension):
    """One instance per operation (strawberry's rule); the LRU is shared through the factory."""

    def __init__(self, cache: LRUCache[str, Cached]) -> None:
        self._cache = cache
        self._hit: Cached | None = None

    def on_parse(self) -> Iterator[None]:
        query = self.execution_context.query
        self._hit = self._cache.get(query) if query else None
        if self._hit is not None:
            self.execution_context.graphql_document = self._hit[0]
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if self._hit is not None:
            context.pre_execution_errors = list(self._hit[1])  # validation is skipped
        yield
        document, errors = context.graphql_document, context.pre_execution_errors
        if self._hit is None and context.query and document is not None and errors is not None:
            self._cache[context.query] = (document, tuple(errors))


def document_cache(maxsize: int = 512) -> Callable[[], DocumentCache]:
    """The extension factory for one schema, with its own bounded cache."""
    cache: LRUCache[str, Cached] = LRUCache(maxsize)
    return lambda: DocumentCache(cache)
