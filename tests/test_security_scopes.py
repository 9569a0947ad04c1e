"""Scopes on fields: what a caller may see is decided per request, whatever is cached.

The simulator's default rooms: 6401 "PM" has participant PIN 3201 and no moderator PIN;
6402 "Board Room" has both (1234 and 9876); 6400 "Sales" has neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.security.identity import PINS, READ, WRITE
from tests.gateway_stack import Stack, StackFactory
from tests.security_helpers import Keys, api_key_security, coded_errors, codes, write_keys

ROOM_FIELDS = (
    "number name participantPassword moderatorPassword hasParticipantPassword "
    "hasModeratorPassword waitForModerator moderators"
)
TWO_ROOMS = (
    f'{{ pm: conference(number: "6401") {{ {ROOM_FIELDS} }} '
    f'board: conference(number: "6402") {{ {ROOM_FIELDS} }} }}'
)
PM = {
    "number": "6401",
    "name": "PM",
    "hasParticipantPassword": True,
    "hasModeratorPassword": False,
    "waitForModerator": False,
    "moderators": [],
}
BOARD = {
    "number": "6402",
    "name": "Board Room",
    "hasParticipantPassword": True,
    "hasModeratorPassword": True,
    "waitForModerator": True,
    "moderators": ["4000"],
}
PINS_OF = {"6401": ("3201", None), "6402": ("1234", "9876")}


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    """reader: read only; operator: read and PINs; writer: write only (no read)."""
    return write_keys(
        tmp_path, {"reader": [READ], "operator": [READ, PINS], "writer": [WRITE, PINS]}
    )


async def as_key(stack: Stack, key: str, query: str) -> dict[str, Any]:
    return await stack.graphql(query, headers={"X-API-Key": key})


async def test_scopes_read_only_key_gets_null_pins_with_forbidden_on_those_paths(
    gateway_stack: StackFactory, keys: Keys
) -> None:
    """conferences:read alone: PIN fields null and FORBIDDEN on exactly their paths."""
    stored, plain = keys
    stack = await gateway_stack(security=api_key_security(stored))
    body = await as_key(stack, plain["reader"], TWO_ROOMS)
    assert body["data"] == {
        "pm": {**PM, "participantPassword": None, "moderatorPassword": None},
        "board": {**BOARD, "participantPassword": None, "moderatorPassword": None},
    }
    assert coded_errors(body) == {
        ("pm", "participantPassword"): "FORBIDDEN",
        ("pm", "moderatorPassword"): "FORBIDDEN",
        ("board", "participantPassword"): "FORBIDDEN",
        ("board", "moderatorPassword"): "FORBIDDEN",
    }
    assert len(codes(body)) == 4
    text = str(body)
    assert all(pin not in text for pin in ("3201", "1234", "9876"))
    assert stack.calls() == 1


async def test_scopes_pins_key_reads_the_pins(gateway_stack: StackFactory, keys: Keys) -> None:
    """conferences:read plus conferences:pins: the PINs, null where a room has none."""
    stored, plain = keys
    stack = await gateway_stack(security=api_key_security(stored))
    body = await as_key(stack, plain["operator"], TWO_ROOMS)
    assert body == {
        "data": {
            "pm": {**PM, "participantPassword": "3201", "moderatorPassword": None},
            "board": {**BOARD, "participantPassword": "1234", "moderatorPassword": "9876"},
        }
    }


async def test_scopes_without_read_conference_fields_are_forbidden(
    gateway_stack: StackFactory, keys: Keys
) -> None:
    """Without conferences:read (even holding pins), conference and conferences are
    FORBIDDEN and the PBX is not asked."""
    stored, plain = keys
    stack = await gateway_stack(security=api_key_security(stored))
    single = await as_key(stack, plain["writer"], '{ conference(number: "6401") { number } }')
    listing = await as_key(stack, plain["writer"], "{ conferences { number } }")
    assert single["data"] == {"conference": None}
    assert coded_errors(single) == {("conference",): "FORBIDDEN"}
    assert listing["data"] is None  # the list is non-null, so null reaches the root
    assert coded_errors(listing) == {("conferences",): "FORBIDDEN"}
    assert stack.calls() == 0


async def test_scopes_cached_rooms_are_shared_but_authorized_per_request(
    gateway_stack: StackFactory, keys: Keys
) -> None:
    """A PIN key fills the cache; a read-only key then reads it with no PBX call and still
    gets FORBIDDEN on the PINs."""
    stored, plain = keys
    stack = await gateway_stack(security=api_key_security(stored))
    filled = await as_key(stack, plain["operator"], TWO_ROOMS)
    assert "errors" not in filled
    assert stack.calls() == 1
    cached = await as_key(stack, plain["reader"], TWO_ROOMS)
    assert stack.calls() == 1
    assert set(coded_errors(cached).values()) == {"FORBIDDEN"}
    assert len(codes(cached)) == 4
    assert cached["data"] == {
        "pm": {**PM, "participantPassword": None, "moderatorPassword": None},
        "board": {**BOARD, "participantPassword": None, "moderatorPassword": None},
    }
    again = await as_key(stack, plain["operator"], TWO_ROOMS)
    assert again == filled  # the refusal did not change what the cache holds


async def test_scopes_list_items_are_checked_one_path_each(
    gateway_stack: StackFactory, keys: Keys
) -> None:
    """In a list, each item's PIN field is FORBIDDEN on its own path; the rest resolves."""
    stored, plain = keys
    stack = await gateway_stack(security=api_key_security(stored))
    query = '{ conferences(numbers: ["6400", "6401", "6402"]) { number participantPassword } }'
    body = await as_key(stack, plain["reader"], query)
    assert body["data"] == {
        "conferences": [
            {"number": n, "participantPassword": None} for n in ("6400", "6401", "6402")
        ]
    }
    assert coded_errors(body) == {
        ("conferences", index, "participantPassword"): "FORBIDDEN" for index in range(3)
    }


async def test_scopes_presence_flags_need_no_pins_scope(
    gateway_stack: StackFactory, keys: Keys
) -> None:
    """hasParticipantPassword / hasModeratorPassword answer for every room without errors."""
    stored, plain = keys
    stack = await gateway_stack(security=api_key_security(stored))
    body = await as_key(
        stack,
        plain["reader"],
        "{ conferences { number hasParticipantPassword hasModeratorPassword } }",
    )
    assert "errors" not in body
    flags = {
        room["number"]: (room["hasParticipantPassword"], room["hasModeratorPassword"])
        for room in body["data"]["conferences"]
    }
    assert flags["6400"] == (False, False)
    assert flags["6401"] == (True, False)
    assert flags["6402"] == (True, True)
    assert flags["6403"] == (False, True)
