"""Number checking: only 1-15 ASCII digits reach the PBX; budgets count per request."""

from __future__ import annotations

import pytest

from gateway.errors import BadInputError
from gateway.schema.numbers import NumberBudget, check_numbers


@pytest.mark.parametrize(
    "bad",
    # fullwidth digits are Unicode digits, but not ASCII ones the PBX reads
    [
        "all",
        "6400,6401",
        " 6400",
        "6400 ",
        "",
        "64-00",
        "+6400",
        "\uff11\uff12\uff13",
        "1" * 16,
        "6400\n",
    ],
)
def test_check_numbers_rejects_anything_but_digits(bad: str) -> None:
    """Values that could widen or break the PBX query are rejected, naming the value."""
    with pytest.raises(BadInputError) as error:
        check_numbers(["6400", bad])
    assert repr(bad[:40]) in error.value.message


def test_check_numbers_collapses_duplicates_in_order() -> None:
    """Duplicates collapse, first-seen order kept."""
    assert check_numbers(["6401", "6400", "6401", "1"]) == ["6401", "6400", "1"]


def test_number_budget_counts_distinct_numbers_across_fields() -> None:
    """The limit counts distinct numbers over the whole request; a refusal counts nothing."""
    budget = NumberBudget(3)
    assert budget.admit(["1", "2"]) == ["1", "2"]
    assert budget.admit(["2", "3"]) == ["2", "3"]
    with pytest.raises(BadInputError, match="limit is 3"):
        budget.admit(["4"])
    assert budget.admit(["1"]) == ["1"]
