"""``updateConference`` end to end: the change reaches the PBX in its wire format, the
payload is the room read back once, and the next query sees the change without a call."""

from __future__ import annotations

import pytest

from gateway.pbx.conference_update import ConferenceChanges, encode_changes
from gateway.pbx.conferences import Prompt
from tests.gateway_stack import StackFactory
from tests.mutation_helpers import UPDATE_NO_PINS, on_pbx, room_name, update


async def test_mutation_valid_update_is_seen_by_the_next_query_without_a_stale_read(
    gateway_stack: StackFactory, pbx_profile: str
) -> None:
    """A cached room, changed: the payload costs one query; the next query costs none
    and shows the new name (the cached old one was dropped)."""
    stack = await gateway_stack()
    assert await room_name(stack, "6400") == "Sales"
    result = await update(stack, UPDATE_NO_PINS, number="6400", name="Sales EMEA")
    assert result == {
        "data": {
            "updateConference": {
                "changedFields": ["name"],
                "conference": {"number": "6400", "name": "Sales EMEA"},
            }
        }
    }
    assert stack.calls("conference/update") == 1
    assert stack.calls("conference/query") == 2  # the warm-up and the payload's read-back
    assert await room_name(stack, "6400") == "Sales EMEA"
    assert stack.calls("conference/query") == 2
    assert on_pbx(stack, "6400")["name"] == "Sales EMEA"


async def test_mutation_sends_every_setting_in_the_pbx_wire_format(
    gateway_stack: StackFactory,
) -> None:
    """Flags as yes/no, moderators as a comma list, prompt in lower case, PINs under the
    API's own spelling: the simulator (which validates like the PBX) stores them."""
    stack = await gateway_stack()
    result = await update(
        stack,
        number="6401",
        name="PM weekly",
        participantPassword="2468*",
        moderatorPassword="1357",
        waitForModerator=True,
        allowInvite=False,
        musicOnHold=False,
        mute=True,
        moderators=["4000", "4001"],
        prompt="EXTEN",
    )
    assert "errors" not in result, result
    payload = result["data"]["updateConference"]
    assert payload["changedFields"] == [
        "name",
        "participantPassword",
        "moderatorPassword",
        "waitForModerator",
        "allowInvite",
        "moderators",
        "musicOnHold",
        "mute",
        "prompt",
    ]
    assert payload["conference"] == {
        "number": "6401",
        "name": "PM weekly",
        "participantPassword": "2468*",
        "moderatorPassword": "1357",
        "hasParticipantPassword": True,
        "hasModeratorPassword": True,
        "waitForModerator": True,
        "allowInvite": False,
        "moderators": ["4000", "4001"],
        "musicOnHold": False,
        "mute": True,
        "prompt": "EXTEN",
    }
    assert on_pbx(stack, "6401") == {
        "number": "6401",
        "name": "PM weekly",
        "participantepassword": "2468*",
        "moderatorpassword": "1357",
        "waitformoderator": "yes",
        "allowinvite": "no",
        "moderators": "4000,4001",
        "musiconhold": "no",
        "mute": "yes",
        "prompt": "exten",
    }


def test_mutation_encoding_sends_only_the_fields_given() -> None:
    """Fields left out are not in the body at all, so the PBX keeps them."""
    body = encode_changes(ConferenceChanges(number="6400", mute=False, prompt=Prompt.NONE))
    assert body == {"number": "6400", "mute": "no", "prompt": "none"}


def test_mutation_encoding_empty_values_clear() -> None:
    """An empty PIN and an empty moderator list are sent as empty strings (they clear)."""
    body = encode_changes(ConferenceChanges(number="6400", participant_password="", moderators=()))
    assert body == {"number": "6400", "participantepassword": "", "moderators": ""}


def test_mutation_changes_repr_never_shows_a_pin() -> None:
    """A stray log of the validated changes cannot carry a PIN."""
    changes = ConferenceChanges(number="6400", participant_password="918273", name="X")
    assert "918273" not in repr(changes)


async def test_mutation_settings_left_out_keep_their_value(gateway_stack: StackFactory) -> None:
    """Changing only `mute` leaves the name, PINs and moderators as they were."""
    stack = await gateway_stack()
    before = on_pbx(stack, "6401")
    result = await update(stack, UPDATE_NO_PINS, number="6401", mute=True)
    assert result["data"]["updateConference"]["changedFields"] == ["mute"]
    assert on_pbx(stack, "6401") == {**before, "mute": "yes"}


@pytest.mark.parametrize(
    ("field", "empty", "wire", "shown"),
    [
        ("participantPassword", "", "participantepassword", None),
        ("moderatorPassword", "", "moderatorpassword", None),
        ("moderators", [], "moderators", []),
    ],
)
async def test_mutation_empty_value_clears_the_setting(
    gateway_stack: StackFactory, field: str, empty: object, wire: str, shown: object
) -> None:
    """An empty PIN ("") is removed (read back as null); [] removes the fixed moderators."""
    stack = await gateway_stack()
    await update(stack, number="6400", participantPassword="1111", moderatorPassword="2222")
    await update(stack, number="6400", moderators=["4000"])
    result = await update(stack, number="6400", **{field: empty})
    assert "errors" not in result, result
    assert result["data"]["updateConference"]["conference"][field] == shown
    assert on_pbx(stack, "6400")[wire] == ""


async def test_mutation_refreshes_the_all_listing(gateway_stack: StackFactory) -> None:
    """A cached list of every room shows the change after one new `all` call."""
    stack = await gateway_stack()
    every = "{ conferences { number name } }"
    await stack.graphql(every)
    await update(stack, UPDATE_NO_PINS, number="6402", name="Renamed")
    result = await stack.graphql(every)
    rooms = {c["number"]: c["name"] for c in result["data"]["conferences"]}
    assert rooms["6402"] == "Renamed"
    assert stack.pbx.stats.query_numbers.count("all") == 2


async def test_mutation_two_updates_in_one_document_apply_in_order(
    gateway_stack: StackFactory,
) -> None:
    """Mutation fields run one after the other; each payload shows its own change."""
    stack = await gateway_stack()
    result = await stack.graphql(
        """mutation {
          a: updateConference(input: {number: "6400", name: "First"}) { conference { name } }
          b: updateConference(input: {number: "6400", name: "Second"}) { conference { name } }
        }"""
    )
    assert result == {
        "data": {
            "a": {"conference": {"name": "First"}},
            "b": {"conference": {"name": "Second"}},
        }
    }
    assert await room_name(stack, "6400") == "Second"
    assert stack.calls("conference/update") == 2
    assert stack.calls("conference/query") == 2
