"""Parse, measure and validate each distinct GraphQL document once, off the event loop.

Profiling the hot path (``make bench``) showed graphql-core spending about 70% of a
cached single-room query validating the same document again, and parsing it again.
Clients send a handful of distinct documents, so the parsed document, its cost and its
validation errors are kept per document, and the next request skips all three steps.

A document not seen before is the expensive case, and an attacker's favourite (issue 15):

- Its parse, cost pass (:mod:`gateway.schema.document_cost`) and validation run in a
  worker thread, at most :data:`WORKERS` at a time, so the event loop keeps answering
  ``/healthz`` and cached queries while they run. On the loop a request costs dictionary
  look-ups and the budget's arithmetic, nothing that grows with the document. A text that
  does not parse is not parsed again on the loop by strawberry: it gets a one-field
  stand-in document (so strawberry skips its parse) and the worker's syntax error as its
  validation result, which strawberry answers as it answers its own parse errors.
- A document over the budget (:mod:`gateway.schema.document_budget`) is refused on its
  cost alone: graphql-core's validation rules never see it.
- Entries are keyed by the document's tokens (a digest of the token stream: comments,
  whitespace and commas are not tokens), so a comment or reformatting variant of a known
  document costs one bounded parse, never a second validation. Texts map to keys in a
  separate LRU, so a flood of variants churns that map, not the documents. (Error
  locations then point into the first variant's text: the same tokens, maybe other lines.)

Safe because validation depends only on the document and the schema (with its fixed rule
set): never on variables or on who asks. Only the request's shared budget (a batch's
operations are charged their sum) is per request, and it is charged on every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import anyio
import anyio.to_thread
from cachetools import LRUCache
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    NameNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    TokenKind,
    parse,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from gateway.schema.compiled_plan import Plan, compile_plan
from gateway.schema.context import gateway_context
from gateway.schema.document_budget import (
    CostLimits,
    refusals,
    token_limit_refusal,
)
from gateway.schema.document_cost import DocumentCost, measure

WORKERS: Final = 1
"""Threads parsing and validating new documents at once (per event loop). One: graphql-core
is pure Python, so a second thread would not run beside the first (the GIL), it would
only take more turns from the event loop; and the budget keeps each job short."""

_T = TypeVar("_T")


@dataclass
class Entry:
    """One distinct document: parsed, measured, and its errors once known."""

    document: DocumentNode
    cost: DocumentCost
    errors: tuple[GraphQLError, ...] | None
    """The budget's refusals, or validation's errors once it ran (None: not yet)."""
    plans: dict[str | None, Plan | None] = field(default_factory=dict)
    """Compiled plans by operation name, once asked for (None: no plan covers it)."""


class Documents:
    """The shared caches and worker threads of one schema."""

    def __init__(self, limits: CostLimits, maxsize: int) -> None:
        self.limits = limits
        self.validations = 0
        """Documents validated so far (each distinct document once, while it is cached)."""
        self.compilations = 0
        """Plans compiled so far (each operation of a valid document once, while cached)."""
        self._entries: LRUCache[bytes, Entry] = LRUCache(maxsize)
        self._keys: LRUCache[str, bytes] = LRUCache(maxsize * 4)
        self._limiters: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, anyio.CapacityLimiter
        ] = weakref.WeakKeyDictionary()

    def known(self, text: str) -> Entry | None:
        """The entry of a text seen before (two look-ups), or None."""
        key = self._keys.get(text)
        return self._entries.get(key) if key is not None else None

    async def learn(
        self, text: str, parse_options: dict[str, Any], operation_name: str | None
    ) -> Entry:
        """Parse and measure a new text in a worker; for a text that does not parse, an
        uncached entry holding the syntax error (see :func:`_stand_in`)."""
        parsed = await self._in_worker(_parse, text, parse_options)
        if isinstance(parsed, GraphQLError):
            return Entry(_stand_in(operation_name), _NOTHING, (parsed,))
        document, key, cost = parsed
        entry = self._entries.get(key)
        if entry is None:
            refused = refusals(cost, self.limits)
            entry = Entry(document, cost, tuple(refused) if refused else None)
            self._entries[key] = entry
        self._keys[text] = key
        return entry

    async def validate(
        self, entry: Entry, schema: GraphQLSchema, rules: tuple[Any, ...]
    ) -> tuple[GraphQLError, ...]:
        """The entry's validation errors, validating it in a worker the first time."""
        if entry.errors is None:
            self.validations += 1
            errors = await self._in_worker(validate_document, schema, entry.document, rules)
            entry.errors = tuple(errors)
        return entry.errors

    def plan(self, entry: Entry, operation_name: str | None) -> Plan | None:
        """The compiled plan of a *valid* entry's operation, compiled the first time
        (:mod:`gateway.schema.compiled_plan`); None when no plan covers it."""
        if operation_name in entry.plans:
            return entry.plans[operation_name]
        plan = compile_plan(entry.document, operation_name)
        self.compilations += 1
        # Kept per name the document holds (and for None), so a caller inventing names
        # cannot grow the dict: a name no operation has finds no plan and is not kept.
        if plan is not None or operation_name is None or _names(entry.document, operation_name):
            entry.plans[operation_name] = plan
        return plan

    async def _in_worker(self, function: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        limiter = self._limiters.get(loop)
        if limiter is None:  # anyio's limiter belongs to the loop that made it
            limiter = self._limiters[loop] = anyio.CapacityLimiter(WORKERS)
        return await anyio.to_thread.run_sync(function, *args, limiter=limiter)


def _names(document: DocumentNode, name: str) -> bool:
    """Whether ``document`` holds an operation called ``name``."""
    return any(
        isinstance(d, OperationDefinitionNode) and d.name is not None and d.name.value == name
        for d in document.definitions
    )


def _parse(
    text: str, options: dict[str, Any]
) -> tuple[DocumentNode, bytes, DocumentCost] | GraphQLError:
    """In a worker: the document, its key and its cost, or the syntax (or token) error."""
    try:
        document = parse(text, **options)
    except GraphQLSyntaxError as error:
        max_tokens = options.get("max_tokens")
        return error if max_tokens is None else token_limit_refusal(error, text, max_tokens)
    except GraphQLError as error:
        return error
    return document, _key(document, text), measure(document)


_NOTHING: Final = DocumentCost(selections=0, spreads=0, aliases=0)


def _stand_in(operation_name: str | None) -> DocumentNode:
    """``query <operation_name> { __typename }``, built rather than parsed (the name is the
    caller's string): a document strawberry can resolve the operation of and leave alone
    while the entry's errors answer. Never validated or executed."""
    name = NameNode(value=operation_name) if operation_name else None
    typename = FieldNode(name=NameNode(value="__typename"))
    operation = OperationDefinitionNode(
        operation=OperationType.QUERY,
        name=name,
        selection_set=SelectionSetNode(selections=(typename,)),
    )
    return DocumentNode(definitions=(operation,))


def _key(document: DocumentNode, text: str) -> bytes:
    """A digest of the token stream: equal for texts that differ only in comments,
    whitespace or commas (which the lexer skips), different otherwise."""
    token = document.loc.start_token if document.loc is not None else None
    if token is None:
        return hashlib.sha256(text.encode(errors="surrogatepass")).digest()
    digest = hashlib.sha256()
    while token is not None:
        if token.kind is not TokenKind.COMMENT:
            value = (token.value or "").encode(errors="surrogatepass")  # JSON allows lone ones
            # Length-prefixed, so no two different streams share an encoding.
            digest.update(b"%s %d:%s" % (token.kind.value.encode(), len(value), value))
        token = token.next
    return digest.digest()


class DocumentCache(SchemaExtension):
    """One instance per operation (strawberry's rule); :class:`Documents` is shared."""

    def __init__(self, documents: Documents) -> None:
        self._documents = documents
        self._entry: Entry | None = None

    async def on_parse(self) -> AsyncIterator[None]:
        context = self.execution_context
        query = context.query
        if query and context.graphql_document is None:
            entry = self._documents.known(query)
            if entry is None:
                options = dict(context.parse_options)
                entry = await self._documents.learn(query, options, context.operation_name)
            self._entry = entry
            context.graphql_document = entry.document
        yield

    async def on_validate(self) -> AsyncIterator[None]:
        context = self.execution_context
        entry = self._entry
        if entry is not None:
            errors = entry.errors
            if errors is None:
                schema = context.schema._schema  # what strawberry validates with
                errors = await self._documents.validate(
                    entry, schema, tuple(context.validation_rules)
                )
            gateway = gateway_context(context.context)
            budget = gateway.document_budget if gateway is not None else None
            refusal = budget.charge(entry.cost) if budget is not None and not errors else None
            # Set, even empty: strawberry then skips its own validation.
            context.pre_execution_errors = [refusal] if refusal else list(errors)
        yield


class DocumentCacheFactory:
    """The extension factory for one schema, with its own bounded caches."""

    def __init__(self, limits: CostLimits, maxsize: int = 512) -> None:
        self.documents = Documents(limits, maxsize)

    def __call__(self) -> DocumentCache:
        return DocumentCache(self.documents)


def documents_of(extensions: Sequence[object]) -> Documents | None:
    """The document cache among a schema's ``extensions`` (the HTTP view's compiled path
    reads it), or None when the schema has none."""
    for extension in extensions:
        if isinstance(extension, DocumentCacheFactory):
            return extension.documents
    return None
