"""The budget a GraphQL document must fit before any validation rule sees it.

graphql-core's validation is not linear: its overlapping-fields rule compares every pair
of fields that share a response name, so 350 copies of ``conferences { number name }``
cost 0.75 s of CPU (issue 15), and rules that follow fragment spreads pay for each
expansion. The figures of :mod:`gateway.schema.document_cost` are cheap to get; a document
over any limit is refused with ``OPERATION_TOO_LARGE`` on those figures alone, and the
largest document the default limits admit validates in milliseconds (README, Security).

Batched operations share one request's budget of fields and spreads (:class:`RequestBudget`):
six documents each under the limit are charged their sum, not six separate budgets.

Every refusal for size is an :class:`OperationTooLargeError`, so it is recognised by its
type, never by its wording; graphql-core's own token limit (a plain syntax error) becomes
one too, at the parse (:func:`token_limit_refusal`).
"""

from __future__ import annotations

from dataclasses import dataclass

from graphql import GraphQLError, GraphQLSyntaxError, Lexer, Source, TokenKind

from gateway.error_code import ErrorCode
from gateway.schema.document_cost import DocumentCost


class OperationTooLargeError(GraphQLError):
    """A document (or a request's documents together) over a size limit."""

    def __init__(self, message: str) -> None:
        super().__init__(message, extensions={"code": ErrorCode.OPERATION_TOO_LARGE})


class TooManyTokensError(GraphQLSyntaxError):
    """graphql-core's token limit, as graphql-core words and places it, with its code."""

    def __init__(self, error: GraphQLSyntaxError, source: Source, position: int) -> None:
        super().__init__(source, position, error.message.removeprefix("Syntax Error: "))
        self.extensions = {"code": ErrorCode.OPERATION_TOO_LARGE}


@dataclass(frozen=True)
class CostLimits:
    """The per-document limits (``GATEWAY_MAX_SELECTIONS`` and the rest)."""

    max_selections: int
    max_spreads: int
    max_depth: int
    max_aliases: int


def refusals(cost: DocumentCost, limits: CostLimits) -> list[GraphQLError]:
    """A coded error per limit ``cost`` breaks; empty when the document fits."""
    if cost.cycle is not None:
        # Invalid rather than too large: graphql-core's words, without running its rule.
        message = f"Cannot spread fragment '{cost.cycle}' within itself."
        return [GraphQLError(message, extensions={"code": ErrorCode.GRAPHQL_VALIDATION_FAILED})]
    errors = [
        # The depth and alias messages are those of the rules this replaces.
        _too_large(f"'{name}' exceeds maximum operation depth of {limits.max_depth}")
        for name, depth in cost.depths
        if depth > limits.max_depth
    ]
    if cost.aliases > limits.max_aliases:
        errors.append(_too_large(f"{cost.aliases} aliases found. Allowed: {limits.max_aliases}"))
    if cost.selections > limits.max_selections:
        errors.append(
            _too_large(
                f"this document selects {cost.selections} fields once its fragments are "
                f"expanded; at most {limits.max_selections} are allowed (GATEWAY_MAX_SELECTIONS)"
            )
        )
    if cost.spreads > limits.max_spreads:
        errors.append(
            _too_large(
                f"this document spreads fragments {cost.spreads} times once expanded; at most "
                f"{limits.max_spreads} are allowed (GATEWAY_MAX_FRAGMENT_SPREADS)"
            )
        )
    return errors


class RequestBudget:
    """Fields and spreads one HTTP request may still spend, across a batch's operations."""

    def __init__(self, limits: CostLimits) -> None:
        self._limits = limits
        self._selections = 0
        self._spreads = 0

    def charge(self, cost: DocumentCost) -> GraphQLError | None:
        """Count one admitted document, or refuse it (counting nothing) past the limits."""
        selections = self._selections + cost.selections
        spreads = self._spreads + cost.spreads
        if selections > self._limits.max_selections:
            return _too_large(
                f"the operations of this request select {selections} fields in all; at most "
                f"{self._limits.max_selections} are allowed per request (GATEWAY_MAX_SELECTIONS)"
            )
        if spreads > self._limits.max_spreads:
            return _too_large(
                f"the operations of this request spread fragments {spreads} times in all; at "
                f"most {self._limits.max_spreads} are allowed per request "
                "(GATEWAY_MAX_FRAGMENT_SPREADS)"
            )
        self._selections, self._spreads = selections, spreads
        return None


def _too_large(message: str) -> GraphQLError:
    return OperationTooLargeError(message)


def token_limit_refusal(error: GraphQLSyntaxError, text: str, max_tokens: int) -> GraphQLError:
    """``error`` from parsing ``text`` with ``max_tokens``: the token limit's abort as a
    :class:`TooManyTokensError`, any other syntax error as it is.

    graphql-core gives its token limit no type of its own; it is told apart by where it
    stands: at the start of the first token past the limit, where graphql-core checks the
    count before anything else can fail.
    """
    positions = list(error.positions or ())
    if len(positions) != 1 or positions[0] not in _past_token_limit(text, max_tokens):
        return error
    return TooManyTokensError(error, error.source or Source(text), positions[0])


def _past_token_limit(text: str, max_tokens: int) -> set[int]:
    """Where the first token past ``max_tokens`` starts, comments counted (graphql-core 3.3)
    and not (3.2); empty when the text has no more, or cannot be read that far."""
    lexer = Lexer(Source(text))
    previous, every, lexical = lexer.token, 0, 0
    past: set[int] = set()
    try:
        while lexical <= max_tokens:
            token = lexer.advance()
            skipped = previous.next  # the comments the lexer stepped over
            while skipped is not None and skipped is not token:
                every += 1
                if every == max_tokens + 1:
                    past.add(skipped.start)
                skipped = skipped.next
            if token.kind is TokenKind.EOF:
                break
            every, lexical = every + 1, lexical + 1
            if every == max_tokens + 1 or lexical == max_tokens + 1:
                past.add(token.start)
            previous = token
    except GraphQLSyntaxError:
        pass  # the lexer's own error stands past here; what was found before holds
    return past
