"""The cost of a GraphQL document, measured in one pass, in time linear in its text.

A walker that follows a fragment spread by walking the fragment again does work
proportional to the document *after* fragment expansion, and a short text makes that
exponential: ``fragment F0 on Query { ...F1 ...F1 } fragment F1 on Query { ...F2 ...F2 }``
doubles at every level (issue 15: 20 levels took seconds, a 2.4 KB body never finished).
Here every selection set of the text is visited once, and every fragment once: fragments
are measured in dependency order and a spread adds its fragment's figures, so fan-out
costs additions, not walks. A fragment that spreads itself (directly or through others)
is found on the way, before anything else is measured.

The figures are those :mod:`gateway.schema.document_budget` bounds: fields and fragment
spreads after expansion (the work graphql-core's validation and execution do), aliases
and each operation's depth (the limits the gateway had as separate validation rules).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)


@dataclass(frozen=True)
class DocumentCost:
    """What one document asks for, fragments expanded."""

    selections: int
    """Fields, in the operations and in fragments no operation spreads (still validated)."""
    spreads: int
    """Fragment spreads."""
    aliases: int
    """Aliased fields in the operations (as strawberry's alias limiter counted them)."""
    depths: tuple[tuple[str, int], ...] = ()
    """Each operation's name (``anonymous`` without one) and depth, root fields at 0."""
    cycle: str | None = None
    """A fragment that spreads itself; when set, the other figures are not measured."""


@dataclass
class _Sum:
    selections: int = 0
    spreads: int = 0
    aliases: int = 0
    depth: int = 0
    """Levels of fields below this selection set, introspection fields not counted."""

    def add(self, other: _Sum, depth: int) -> None:
        self.selections += other.selections
        self.spreads += other.spreads
        self.aliases += other.aliases
        self.depth = max(self.depth, depth)


def measure(document: DocumentNode) -> DocumentCost:
    """The document's cost; each fragment is measured once however often it is spread."""
    fragments = [d for d in document.definitions if isinstance(d, FragmentDefinitionNode)]
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    by_name = {fragment.name.value: fragment for fragment in fragments}
    spreads_of = {name: set(_spread_names(f.selection_set)) for name, f in by_name.items()}
    order, cycle = _dependency_order(spreads_of)
    if cycle is not None:
        return DocumentCost(selections=0, spreads=0, aliases=0, cycle=cycle)
    costs: dict[str, _Sum] = {}
    for name in order:  # a fragment after every fragment it spreads
        costs[name] = _walk(by_name[name].selection_set, costs)
    total = _Sum()
    depths = []
    for operation in operations:
        cost = _walk(operation.selection_set, costs)
        total.add(cost, 0)
        name = operation.name.value if operation.name else "anonymous"
        depths.append((name, max(cost.depth - 1, 0)))  # as strawberry counted: roots at 0
    # graphql-core validates every definition, spread or not (and reports the unused):
    # a fragment no operation reaches, or one shadowed by a second of the same name, costs.
    reached = _reached({s for o in operations for s in _spread_names(o.selection_set)}, spreads_of)
    selections = total.selections + sum(
        costs[f.name.value].selections
        if by_name[f.name.value] is f
        else _walk(f.selection_set, costs).selections
        for f in fragments
        if f.name.value not in reached or by_name[f.name.value] is not f
    )
    return DocumentCost(
        selections=selections,
        spreads=total.spreads,
        aliases=total.aliases,
        depths=tuple(depths),
    )


def _walk(selection_set: SelectionSetNode | None, fragments: dict[str, _Sum]) -> _Sum:
    """One selection set's figures, with the already-measured ``fragments`` added at their
    spreads; recursion follows the text's nesting only (the parser bounds it)."""
    total = _Sum()
    if selection_set is None:
        return total
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            inner = _walk(selection.selection_set, fragments)
            total.selections += 1
            total.aliases += 1 if selection.alias else 0
            # Introspection has graphql-core's own depth rule, as it had before.
            depth = 0 if selection.name.value.startswith("__") else 1 + inner.depth
            total.add(inner, depth)
        elif isinstance(selection, InlineFragmentNode):
            inner = _walk(selection.selection_set, fragments)
            total.add(inner, inner.depth)
        elif isinstance(selection, FragmentSpreadNode):
            total.spreads += 1
            fragment = fragments.get(selection.name.value)
            if fragment is not None:  # unknown: graphql-core's own rule reports it
                total.add(fragment, fragment.depth)
    return total


def _spread_names(selection_set: SelectionSetNode | None) -> Iterator[str]:
    """The names this selection set spreads directly (nested fields included)."""
    if selection_set is None:
        return
    for selection in selection_set.selections:
        if isinstance(selection, FragmentSpreadNode):
            yield selection.name.value
        elif isinstance(selection, FieldNode | InlineFragmentNode):
            yield from _spread_names(selection.selection_set)


def _dependency_order(spreads_of: dict[str, set[str]]) -> tuple[list[str], str | None]:
    """Fragments, each after those it spreads, and a fragment in a cycle if there is one.

    Iterative, so a long chain of fragments cannot exhaust Python's recursion limit.
    """
    visiting, done = set(), set()
    order: list[str] = []
    for root in spreads_of:
        if root in done:
            continue
        visiting.add(root)
        stack = [(root, iter(sorted(spreads_of[root])))]
        while stack:
            name, children = stack[-1]
            for child in children:
                if child not in spreads_of or child in done:
                    continue  # unknown (reported by graphql-core) or measured already
                if child in visiting:
                    return order, child
                visiting.add(child)
                stack.append((child, iter(sorted(spreads_of[child]))))
                break
            else:
                stack.pop()
                visiting.discard(name)
                done.add(name)
                order.append(name)
    return order, None


def _reached(roots: set[str], spreads_of: dict[str, set[str]]) -> set[str]:
    """The fragments ``roots`` spread, directly or through other fragments."""
    reached, pending = set(), list(roots)
    while pending:
        name = pending.pop()
        if name in reached or name not in spreads_of:
            continue
        reached.add(name)
        pending.extend(spreads_of[name])
    return reached
