"""Conference numbers as callers give them, checked before the PBX sees any.

The PBX's ``number`` field takes one number, a comma list or ``all`` (``pbx-api.md``), so
an unchecked ``"6400,6401"`` or ``"all"`` would widen a query. A number here is 1 to 15
ASCII digits and nothing else: no spaces, signs or separators.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from gateway.errors import BadInputError

_NUMBER: Final = re.compile(r"[0-9]{1,15}")


def non_null_items(numbers: Iterable[str | None], argument: str = "numbers") -> list[str]:
    """``numbers`` as given; BadInputError naming the position (0-based) of the first null.

    The contract types the list as ``[String]``, so a client whose variable is ``[String]``
    passes validation; a null item still names no room, and is refused here, before any PBX call.
    """
    items = list(numbers)
    for position, number in enumerate(items):
        if number is None:
            raise BadInputError(
                f"{argument}[{position}] is null: give a conference number in every item "
                f"(positions count from 0), or leave {argument} out for every room"
            )
    return [number for number in items if number is not None]


def check_numbers(numbers: Iterable[str]) -> list[str]:
    """The distinct numbers in first-seen order; BadInputError naming the first bad one."""
    distinct = list(dict.fromkeys(numbers))
    for number in distinct:
        if not _NUMBER.fullmatch(number):
            raise BadInputError(
                f"{number[:40]!r} is not a conference number: give 1 to 15 digits, "
                "one number per list item (no commas, spaces or 'all')"
            )
    return distinct


class NumberBudget:
    """Counts the distinct numbers one GraphQL request asks for, across all its fields."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def admit(self, numbers: Iterable[str]) -> list[str]:
        """Check ``numbers`` and count them; BadInputError past the limit, counting none."""
        distinct = check_numbers(numbers)
        total = len(self._seen.union(distinct))
        if total > self._limit:
            raise BadInputError(
                f"this request asks for {total} conference numbers; the limit is {self._limit} "
                "per request (GATEWAY_MAX_NUMBERS): split it, or ask for all conferences "
                "with `conferences` and no argument"
            )
        self._seen.update(distinct)
        return distinct
