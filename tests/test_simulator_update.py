"""The simulator's conference/update: validation, unknown numbers, applying, and rejection."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.simulator import SimulatorState

UPDATE = "/api/v2.0.0/conference/update"
QUERY = "/api/v2.0.0/conference/query"


async def _update(client: httpx.AsyncClient, token: str, **fields: Any) -> dict[str, Any]:
    answer: dict[str, Any] = (
        await client.post(UPDATE, params={"token": token}, json=fields)
    ).json()
    return answer


async def _room(client: httpx.AsyncClient, token: str, number: str) -> dict[str, str]:
    answer = await client.post(QUERY, params={"token": token}, json={"number": number})
    room: dict[str, str] = answer.json()["conferences"][0]
    return room


async def test_update_applies_fields_and_answers_success(
    sim_client: httpx.AsyncClient, sim_token: str
) -> None:
    """A valid update answers Success and the next query shows it."""
    answer = await _update(
        sim_client,
        sim_token,
        number="6400",
        name="Sales West",
        participantepassword="12*34",
        moderators="4000,4001",
        mute="yes",
        prompt="none",
    )
    assert answer == {"status": "Success"}
    room = await _room(sim_client, sim_token, "6400")
    expected = ("Sales West", "12*34", "4000,4001", "yes", "none")
    fields = ("name", "participantepassword", "moderators", "mute", "prompt")
    assert expected == tuple(room[field] for field in fields)


async def test_update_bare_number_moderator_stored_as_string(
    sim_client: httpx.AsyncClient, sim_token: str
) -> None:
    """A JSON-number moderator is stored and answered as a string."""
    await _update(sim_client, sim_token, number="6400", moderators=4005)
    assert (await _room(sim_client, sim_token, "6400"))["moderators"] == "4005"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        *[("name", f"Bad{char}Name") for char in "&'<>\\|$]\"`"],
        ("name", ""),
        ("participantepassword", "12a4"),
        ("moderatorpassword", "#1"),
        ("moderators", "4000;4001"),
        ("moderators", "4000,"),
        ("moderators", "boss"),
        ("waitformoderator", "true"),
        ("allowinvite", "Yes"),
        ("musiconhold", ""),
        ("mute", 1),
        ("prompt", "beep"),
    ],
)
async def test_update_invalid_field_fails_and_changes_nothing(
    sim_client: httpx.AsyncClient, sim_token: str, field: str, value: Any
) -> None:
    """An invalid value fails the update (errordata names the field) and nothing is applied."""
    before = await _room(sim_client, sim_token, "6402")
    answer = await _update(
        sim_client, sim_token, number="6402", **{"name": "Renamed", field: value}
    )
    assert {"status": "Failed", "errno": "10004", "errordata": field} == answer
    assert before == await _room(sim_client, sim_token, "6402")


async def test_update_unknown_number_fails(sim_client: httpx.AsyncClient, sim_token: str) -> None:
    """Updating a number the PBX does not have answers Failed with ``unknown_errno``."""
    answer = await _update(sim_client, sim_token, number="9999", name="Ghost")
    assert answer == {"status": "Failed", "errno": "10004"}


async def test_update_blank_number_answers_10004(
    sim_client: httpx.AsyncClient, sim_token: str
) -> None:
    """An update without a number answers 10004."""
    assert (await _update(sim_client, sim_token, name="X"))["errno"] == "10004"


async def test_update_ignores_unknown_keys(sim_client: httpx.AsyncClient, sim_token: str) -> None:
    """Keys that are not conference fields are ignored."""
    answer = await _update(sim_client, sim_token, number="6401", colour="blue")
    assert answer == {"status": "Success"}


async def test_update_rejected_by_fail_next_for_update_only(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """fail-next filtered to conference/update rejects updates but not queries."""
    sim_state.fail_next(1, "10025", endpoint="conference/update")
    await _room(sim_client, sim_token, "6400")
    answer = await _update(sim_client, sim_token, number="6400", name="Nope")
    assert answer == {"status": "Failed", "errno": "10025"}
    assert (await _room(sim_client, sim_token, "6400"))["name"] == "Sales"
    assert await _update(sim_client, sim_token, number="6400", name="Y") == {"status": "Success"}


async def test_update_invalid_errno_configurable(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """``invalid_errno`` sets the errno of a validation failure."""
    sim_state.configure(invalid_errno="10017")
    answer = await _update(sim_client, sim_token, number="6400", prompt="loud")
    assert answer["errno"] == "10017"
