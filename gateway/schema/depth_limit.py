"""The query depth limit, as a validation rule that survives any document.

strawberry's ``QueryDepthLimiter`` raises (``max()`` of nothing, a missing fragment) on
documents graphql-core itself only reports as invalid: an empty selection set, a spread
of a fragment that does not exist. A crash there turned a client's mistake into
``INTERNAL_ERROR``. This rule measures the same thing, with unknown fragments counting as
depth 0 (graphql-core's own rules then report them properly).
"""

from __future__ import annotations

from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
)


def depth_limit(max_depth: int) -> type[ASTValidationRule]:
    """A rule class refusing operations nested deeper than ``max_depth`` fields."""

    class DepthLimit(ASTValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            document = context.document
            fragments = {
                d.name.value: d
                for d in document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            for definition in document.definitions:
                if not isinstance(definition, OperationDefinitionNode):
                    continue
                # As strawberry counts it: the root fields are at depth 0.
                depth = max(_depth(definition.selection_set, fragments, frozenset()) - 1, 0)
                if depth > max_depth:
                    name = definition.name.value if definition.name else "anonymous"
                    context.report_error(
                        GraphQLError(
                            f"'{name}' exceeds maximum operation depth of {max_depth}",
                            definition,
                        )
                    )

    return DepthLimit


def _depth(
    selections: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    visiting: frozenset[str],
) -> int:
    if selections is None:
        return 0
    deepest = 0
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value.startswith("__"):
                continue  # introspection has graphql-core's own depth rule
            depth = 1 + _depth(selection.selection_set, fragments, visiting)
        elif isinstance(selection, InlineFragmentNode):
            depth = _depth(selection.selection_set, fragments, visiting)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is None or name in visiting:  # unknown or a cycle: others report it
                continue
            depth = _depth(fragment.selection_set, fragments, visiting | {name})
        else:
            continue
        deepest = max(deepest, depth)
    return deepest
