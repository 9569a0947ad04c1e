"""The document cost pass: its figures, fragments measured once, cycles, and the budget."""

from __future__ import annotations

from graphql import parse

from gateway.schema.document_budget import CostLimits, RequestBudget, refusals
from gateway.schema.document_cost import DocumentCost, measure

LIMITS = CostLimits(max_selections=10, max_spreads=4, max_depth=2, max_aliases=1)


def cost(document: str) -> DocumentCost:
    return measure(parse(document))


def test_cost_counts_fields_spreads_aliases_and_depth_through_fragments() -> None:
    """Fields and aliases inside a fragment count at each spread; depth as strawberry
    counted it (root fields at 0, introspection fields not counted)."""
    measured = cost(
        "query Q { conferences { ...F ...F } __schema { types { name } } }"
        " fragment F on Conference { n: number name }"
    )
    assert measured == DocumentCost(
        selections=8, spreads=2, aliases=2, depths=(("Q", 1),), cycle=None
    )


def test_cost_of_a_fan_out_is_exact_and_linear() -> None:
    """60 levels of doubling (the 2.4 KB attack) are measured at once: 2**61 - 2 spreads."""
    levels = 60
    document = " ".join(
        ["query { ...F0 }"]
        + [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)]
        + [f"fragment F{levels} on Query {{ conferences {{ number }} }}"]
    )
    measured = cost(document)
    assert measured.spreads == 2 ** (levels + 1) - 1
    assert measured.selections == 2 * 2**levels


def test_cost_counts_fragments_no_operation_reaches() -> None:
    """An unused fragment, and one shadowed by a second of the same name, are validated
    by graphql-core all the same, so their fields count."""
    measured = cost(
        "{ __typename } fragment U on Query { a: __typename b: __typename }"
        " fragment S on Query { __typename } fragment S on Query { x: __typename y: __typename }"
    )
    assert measured.selections == 1 + 2 + 1 + 2
    assert measured.aliases == 0  # aliases count in operations, as before


def test_cost_finds_a_cycle_through_a_long_chain_without_recursion() -> None:
    """A chain of 3,000 fragments closed into a cycle is found (iteratively: no
    RecursionError), and the budget refuses it as invalid."""
    chain = [f"fragment F{i} on Query {{ ...F{i + 1} }}" for i in range(3000)]
    measured = cost(" ".join(["{ ...F0 }", *chain, "fragment F3000 on Query { ...F0 }"]))
    assert measured.cycle is not None
    [error] = refusals(measured, LIMITS)
    assert error.extensions == {"code": "GRAPHQL_VALIDATION_FAILED"}


def test_budget_names_every_limit_broken() -> None:
    """Depth, aliases, fields and spreads over their limits: one coded error each."""
    measured = cost(
        '{ a: conference(number: "1") { ...F ...F ...F ...F ...F } b: conferences { number } }'
        " fragment F on Conference { number name }"
    )
    messages = [error.message for error in refusals(measured, LIMITS)]
    assert all(e.extensions == {"code": "OPERATION_TOO_LARGE"} for e in refusals(measured, LIMITS))
    assert messages == [
        "2 aliases found. Allowed: 1",
        "this document selects 13 fields once its fragments are expanded; at most 10 are "
        "allowed (GATEWAY_MAX_SELECTIONS)",
        "this document spreads fragments 5 times once expanded; at most 4 are allowed "
        "(GATEWAY_MAX_FRAGMENT_SPREADS)",
    ]
    deep = cost("query Deep { a { b { c { d } } } }")
    assert [e.message for e in refusals(deep, LIMITS)] == [
        "'Deep' exceeds maximum operation depth of 2"
    ]


def test_request_budget_charges_the_sum_and_counts_no_refused_document() -> None:
    """A request's documents share the budget; a refused one is not counted."""
    budget = RequestBudget(LIMITS)
    six = DocumentCost(selections=6, spreads=0, aliases=0)
    four = DocumentCost(selections=4, spreads=0, aliases=0)
    assert budget.charge(six) is None
    refused = budget.charge(six)
    assert refused is not None
    assert refused.extensions == {"code": "OPERATION_TOO_LARGE"}
    assert budget.charge(four) is None  # 6 + 4: exactly the limit
