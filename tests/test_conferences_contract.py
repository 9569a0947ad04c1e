"""``conferences(numbers: [String])``, exactly as the contract types it, over HTTP.

A client's variable may be typed ``[String]`` (the contract), ``[String!]`` or ``[String]!``;
all three validate and answer. A null item names no room: it is refused by position, before
any PBX call. Real gateway, real simulator, loopback.
"""

from __future__ import annotations

import pytest

from gateway.schema import build_schema
from tests.gateway_stack import StackFactory

ROOMS = "query Rooms($numbers: {type}) {{ conferences(numbers: $numbers) {{ number }} }}"


def test_contract_numbers_argument_is_list_of_nullable_strings() -> None:
    """The schema says `conferences(numbers: [String])`, not `[String!]`."""
    printed = build_schema().as_str()
    assert "    numbers: [String]\n  ): [Conference]!" in printed


@pytest.mark.parametrize("variable_type", ["[String]", "[String!]", "[String]!"])
async def test_contract_variable_types_all_answer(
    gateway_stack: StackFactory, variable_type: str
) -> None:
    """A `[String]`, `[String!]` or `[String]!` variable is accepted and answered."""
    stack = await gateway_stack()
    result = await stack.graphql(ROOMS.format(type=variable_type), {"numbers": ["6401", "6400"]})
    assert "errors" not in result, result
    assert result["data"]["conferences"] == [{"number": "6401"}, {"number": "6400"}]
    assert stack.calls() == 1


@pytest.mark.parametrize("variable_type", ["[String]", "[String]!"])
async def test_contract_null_item_is_refused_by_position(
    gateway_stack: StackFactory, variable_type: str
) -> None:
    """A null item is BAD_USER_INPUT naming `numbers[2]`, and costs no PBX call."""
    stack = await gateway_stack()
    before = stack.calls()
    result = await stack.graphql(
        ROOMS.format(type=variable_type), {"numbers": ["6400", "6401", None]}
    )
    assert result["data"] is None
    (error,) = result["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "numbers[2] is null" in error["message"]
    assert error["path"] == ["conferences"]
    assert stack.calls() == before


async def test_contract_null_item_in_literal_is_refused(gateway_stack: StackFactory) -> None:
    """A literal list with null (no variable) is refused the same way."""
    stack = await gateway_stack()
    result = await stack.graphql('{ conferences(numbers: [null, "6400"]) { number } }')
    assert "numbers[0] is null" in result["errors"][0]["message"]
    assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert stack.calls() == 0


async def test_contract_non_null_variable_refuses_null_item_before_execution(
    gateway_stack: StackFactory,
) -> None:
    """With `[String!]` the client's own type refuses a null item (GraphQL validation)."""
    stack = await gateway_stack()
    result = await stack.graphql(ROOMS.format(type="[String!]"), {"numbers": [None]})
    assert result["errors"]
    assert result.get("data") is None
    assert stack.calls() == 0


async def test_contract_null_list_means_every_room(gateway_stack: StackFactory) -> None:
    """`numbers: null` (a `[String]` variable set to null) answers every room."""
    stack = await gateway_stack()
    result = await stack.graphql(ROOMS.format(type="[String]"), {"numbers": None})
    assert "errors" not in result
    assert len(result["data"]["conferences"]) >= 2
