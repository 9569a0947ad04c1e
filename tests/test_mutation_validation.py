"""``UpdateConferenceInput``'s rules: every violation is BAD_USER_INPUT naming its field,
all are reported at once, and an invalid change never reaches the PBX."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import GraphQLInputObjectType

from gateway.errors import InvalidFieldsError
from gateway.pbx.conferences import Prompt
from gateway.schema import build_schema
from gateway.schema.conference_update_input import UpdateConferenceInput, validate_update
from gateway.schema.types import ConferencePrompt
from tests.gateway_stack import StackFactory
from tests.mutation_helpers import error_of, update

FORBIDDEN_IN_NAMES = list("&'<>\\|$]\"`")

INVALID: list[tuple[dict[str, Any], str]] = [
    ({"number": "64a0", "name": "X"}, "number"),
    ({"number": "", "name": "X"}, "number"),
    ({"number": "1234567890123456", "name": "X"}, "number"),
    ({"number": "all", "name": "X"}, "number"),
    ({"number": "6400,6401", "name": "X"}, "number"),
    ({"number": "6400"}, "input"),
    ({"number": "6400", "name": ""}, "name"),
    ({"number": "6400", "name": "   "}, "name"),
    ({"number": "6400", "name": "x" * 64}, "name"),
    ({"number": "6400", "name": " Sales"}, "name"),
    ({"number": "6400", "name": "Sales\nEMEA"}, "name"),
    ({"number": "6400", "name": None}, "name"),
    *[({"number": "6400", "name": f"A{char}B"}, "name") for char in FORBIDDEN_IN_NAMES],
    ({"number": "6400", "participantPassword": "12a4"}, "participantPassword"),
    ({"number": "6400", "participantPassword": "1" * 33}, "participantPassword"),
    ({"number": "6400", "participantPassword": " 1234"}, "participantPassword"),
    ({"number": "6400", "participantPassword": "١٢٣"}, "participantPassword"),  # Arabic digits
    ({"number": "6400", "participantPassword": None}, "participantPassword"),
    ({"number": "6400", "moderatorPassword": "#99"}, "moderatorPassword"),
    ({"number": "6400", "moderatorPassword": "9" * 33}, "moderatorPassword"),
    ({"number": "6400", "moderators": ["40a0"]}, "moderators"),
    ({"number": "6400", "moderators": [""]}, "moderators"),
    ({"number": "6400", "moderators": ["4000,4001"]}, "moderators"),
    ({"number": "6400", "moderators": ["1234567890123456"]}, "moderators"),
    ({"number": "6400", "moderators": [str(4000 + i) for i in range(51)]}, "moderators"),
    ({"number": "6400", "moderators": ["4000", "4001", "4000"]}, "moderators"),
    ({"number": "6400", "moderators": None}, "moderators"),
    ({"number": "6400", "waitForModerator": None}, "waitForModerator"),
    ({"number": "6400", "allowInvite": None}, "allowInvite"),
    ({"number": "6400", "musicOnHold": None}, "musicOnHold"),
    ({"number": "6400", "mute": None}, "mute"),
    ({"number": "6400", "prompt": None}, "prompt"),
]

_PYTHON_NAMES = {
    "participantPassword": "participant_password",
    "moderatorPassword": "moderator_password",
    "waitForModerator": "wait_for_moderator",
    "allowInvite": "allow_invite",
    "musicOnHold": "music_on_hold",
}


def as_input(fields: dict[str, Any]) -> UpdateConferenceInput:
    """The input object strawberry would build from these (schema-named) fields."""
    kwargs = {_PYTHON_NAMES.get(name, name): value for name, value in fields.items()}
    if isinstance(kwargs.get("prompt"), str):
        kwargs["prompt"] = ConferencePrompt[kwargs["prompt"]]
    return UpdateConferenceInput(**kwargs)


@pytest.mark.parametrize(("fields", "field"), INVALID, ids=lambda v: repr(v)[:40])
def test_validation_rejects_with_the_field_named(fields: dict[str, Any], field: str) -> None:
    """Each broken rule is a violation of exactly the field that broke it."""
    with pytest.raises(InvalidFieldsError) as caught:
        validate_update(as_input(fields))
    assert caught.value.code == "BAD_USER_INPUT"
    assert {f for f, _ in caught.value.violations} == {field}
    assert caught.value.extensions["field"] == field


def test_validation_reports_every_violation_at_once() -> None:
    """A request breaking four rules hears about all four, in schema order."""
    with pytest.raises(InvalidFieldsError) as caught:
        validate_update(
            as_input(
                {
                    "number": "x",
                    "name": "a&b",
                    "participantPassword": "pin",
                    "moderators": ["4000", "4000"],
                }
            )
        )
    fields = [field for field, _ in caught.value.violations]
    assert fields == ["number", "name", "participantPassword", "moderators"]
    assert [v["field"] for v in caught.value.extensions["violations"]] == fields


def test_validation_accepts_the_limits() -> None:
    """63 characters, a 32-character PIN, 50 moderators and "" / [] are all allowed."""
    changes = validate_update(
        as_input(
            {
                "number": "123456789012345",
                "name": "n" * 63,
                "participantPassword": "*" + "1" * 31,
                "moderatorPassword": "",
                "moderators": [str(4000 + i) for i in range(50)],
                "prompt": "NONE",
            }
        )
    )
    assert changes.name == "n" * 63
    assert changes.moderator_password == ""
    assert changes.moderators is not None and len(changes.moderators) == 50
    assert changes.prompt is Prompt.NONE
    assert changes.changed() == (
        "name",
        "participant_password",
        "moderator_password",
        "moderators",
        "prompt",
    )


def test_validation_accepts_names_with_unicode_and_punctuation_the_pbx_allows() -> None:
    """Only the documented characters are refused: accents, dashes, parentheses pass."""
    changes = validate_update(as_input({"number": "6400", "name": "Équipe (Nord) - #2 / été"}))
    assert changes.name == "Équipe (Nord) - #2 / été"


def test_validation_messages_never_quote_a_pin() -> None:
    """A refused PIN is described, never repeated."""
    with pytest.raises(InvalidFieldsError) as caught:
        validate_update(
            as_input(
                {"number": "6400", "participantPassword": "55x5", "moderatorPassword": "7" * 40}
            )
        )
    text = str(caught.value.extensions) + caught.value.message
    assert "55x5" not in text
    assert "7" * 40 not in text


def test_validation_every_input_field_is_described() -> None:
    """GraphiQL's docs pane explains each field of UpdateConferenceInput."""
    input_type = build_schema()._schema.type_map["UpdateConferenceInput"]
    assert isinstance(input_type, GraphQLInputObjectType)
    assert input_type.description
    assert [name for name, f in input_type.fields.items() if not f.description] == []


async def test_mutation_invalid_inputs_cost_no_pbx_call(gateway_stack: StackFactory) -> None:
    """Every invalid input above, sent through the gateway, answers BAD_USER_INPUT naming
    the field, and the PBX sees neither an update nor a query."""
    stack = await gateway_stack()
    queries_before = stack.calls("conference/query")
    for fields, field in INVALID:
        result = await update(stack, **fields)
        error = error_of(result)
        assert result["data"] is None
        assert error["extensions"]["code"] == "BAD_USER_INPUT", (fields, error)
        assert error["extensions"]["field"] == field, (fields, error)
        assert error["path"] == ["updateConference"]
    assert stack.calls("conference/update") == 0
    assert stack.calls("conference/query") == queries_before


async def test_mutation_wrongly_typed_values_are_refused_by_graphql(
    gateway_stack: StackFactory,
) -> None:
    """A number where a Boolean belongs, or an unknown prompt, never reaches a resolver."""
    stack = await gateway_stack()
    for fields in ({"number": "6400", "mute": "yes"}, {"number": "6400", "prompt": "LOUD"}):
        result = await update(stack, **fields)
        assert error_of(result)["extensions"]["code"] == "BAD_USER_INPUT"
    result = await stack.graphql(
        'mutation { updateConference(input: {number: "6400", mute: 1}) { changedFields } }'
    )
    assert error_of(result)["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert stack.calls("conference/update") == 0
