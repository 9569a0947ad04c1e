"""The simulator's conference/query: numbers, lists, ``all``, wire shape, K2, unknown numbers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.simulator import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    SimulatorConfig,
    SimulatorState,
    create_simulator_app,
    password_digest,
)
from gateway.simulator.conference_rules import FIELDS

QUERY = "/api/v2.0.0/conference/query"


async def _query(client: httpx.AsyncClient, token: str, number: Any) -> dict[str, Any]:
    answer: dict[str, Any] = (
        await client.post(QUERY, params={"token": token}, json={"number": number})
    ).json()
    return answer


async def _numbers(client: httpx.AsyncClient, token: str, number: str) -> list[str]:
    return [room["number"] for room in (await _query(client, token, number))["conferences"]]


async def _answer_with(config: SimulatorConfig, number: str) -> dict[str, Any]:
    app = create_simulator_app(config)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pbx.test") as client:
        login = {"username": DEMO_USERNAME, "password": password_digest(DEMO_PASSWORD)}
        token = (await client.post("/api/v2.0.0/login", json=login)).json()["token"]
        return await _query(client, token, number)


async def test_query_one_number_matches_doc_example(
    sim_client: httpx.AsyncClient, sim_token: str
) -> None:
    """Querying 6401 answers the doc's example room, field for field."""
    answer = await _query(sim_client, sim_token, "6401")
    expected = {
        "number": "6401",
        "name": "PM",
        "participantepassword": "3201",
        "moderatorpassword": "",
        "waitformoderator": "no",
        "allowinvite": "yes",
        "moderators": "",
        "musiconhold": "yes",
        "mute": "no",
        "prompt": "default",
    }
    assert {"status": "Success", "conferences": [expected]} == answer


async def test_query_comma_list_answers_in_request_order(
    sim_client: httpx.AsyncClient, sim_token: str
) -> None:
    """A comma list answers each room once, in the order asked."""
    assert await _numbers(sim_client, sim_token, "6403,6400") == ["6403", "6400"]
    assert await _numbers(sim_client, sim_token, "6400, 6401,6400,") == ["6400", "6401"]


async def test_query_all_answers_every_room(sim_client: httpx.AsyncClient, sim_token: str) -> None:
    """``all`` answers the twelve default rooms, 6400 to 6411."""
    expected = [str(number) for number in range(6400, 6412)]
    assert expected == await _numbers(sim_client, sim_token, "all")


async def test_query_wire_values_are_strings_with_exact_fields(
    sim_client: httpx.AsyncClient, sim_token: str
) -> None:
    """Every room carries exactly the documented fields, all strings."""
    for room in (await _query(sim_client, sim_token, "all"))["conferences"]:
        assert list(FIELDS) == list(room)
        assert all(isinstance(value, str) for value in room.values())


async def test_query_moderators_shapes_on_the_wire(
    sim_client: httpx.AsyncClient, sim_token: str
) -> None:
    """The default set shows moderators as "", "4000" and "4000,4001"."""
    rooms = (await _query(sim_client, sim_token, "all"))["conferences"]
    assert {"", "4000", "4000,4001"} <= {room["moderators"] for room in rooms}
    assert {"default", "exten", "none"} == {room["prompt"] for room in rooms}


async def test_query_bare_json_number_is_accepted(
    sim_client: httpx.AsyncClient, sim_token: str
) -> None:
    """A number sent as a JSON integer is read as its string."""
    assert [
        room["number"] for room in (await _query(sim_client, sim_token, 6402))["conferences"]
    ] == ["6402"]


@pytest.mark.parametrize("number", ["", "  ", ",", None, ["6400"], True])
async def test_query_blank_or_odd_number_answers_10004(
    sim_client: httpx.AsyncClient, sim_token: str, number: Any
) -> None:
    """A missing, blank or non-string ``number`` answers 10004."""
    assert await _query(sim_client, sim_token, number) == {"status": "Failed", "errno": "10004"}


async def test_query_without_number_key_answers_10004(
    sim_client: httpx.AsyncClient, sim_token: str
) -> None:
    """A body without ``number`` answers 10004."""
    answer = await sim_client.post(QUERY, params={"token": sim_token}, json={"numbers": "6400"})
    assert answer.json()["errno"] == "10004"


async def test_query_k2_mode_leaves_out_mute_and_prompt() -> None:
    """In K2 mode rooms have no ``mute`` and no ``prompt``."""
    answer = await _answer_with(SimulatorConfig(k2=True), "6400")
    assert {"mute", "prompt"}.isdisjoint(answer["conferences"][0])
    assert len(answer["conferences"][0]) == 8


async def test_query_unknown_omit_mode_leaves_unknown_out() -> None:
    """``omit`` (default): Success with only the known rooms."""
    answer = await _answer_with(SimulatorConfig(), "6400,9999")
    assert [room["number"] for room in answer["conferences"]] == ["6400"]


async def test_query_unknown_empty_mode_answers_empty_list() -> None:
    """``empty``: any unknown number makes the whole answer an empty list."""
    answer = await _answer_with(SimulatorConfig(unknown_numbers="empty"), "6400,9999")
    assert answer == {"status": "Success", "conferences": []}


async def test_query_unknown_missing_mode_leaves_out_key() -> None:
    """``missing``: any unknown number makes a Success without ``conferences``."""
    answer = await _answer_with(SimulatorConfig(unknown_numbers="missing"), "9999")
    assert answer == {"status": "Success"}


async def test_query_unknown_failed_mode_fails_batch() -> None:
    """``failed``: any unknown number fails the whole call with ``unknown_errno``."""
    config = SimulatorConfig(unknown_numbers="failed", unknown_errno="10033")
    assert await _answer_with(config, "6400,9999") == {"status": "Failed", "errno": "10033"}


@pytest.mark.parametrize("mode", ["omit", "empty", "missing", "failed"])
async def test_query_known_numbers_unaffected_by_unknown_mode(mode: str) -> None:
    """With only known numbers every mode answers the rooms."""
    answer = await _answer_with(SimulatorConfig(unknown_numbers=mode), "6400,6401")  # type: ignore[arg-type]
    assert len(answer["conferences"]) == 2


async def test_query_numbers_recorded_in_stats(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """Each number string the query received is recorded, in order; calls are counted."""
    for number in ("6400", "6400,6401", "all"):
        await _query(sim_client, sim_token, number)
    await sim_client.post(QUERY, params={"token": "f" * 32}, json={"number": "6402"})
    stats = sim_state.stats_json()
    assert stats["query_numbers"] == ["6400", "6400,6401", "all"]
    assert stats["calls"] == {"login": 1, "conference/query": 4}


async def test_query_unknown_mode_switchable_at_run_time(
    sim_client: httpx.AsyncClient, sim_token: str
) -> None:
    """``POST /__simulator/config`` changes ``unknown_numbers`` and ``k2`` while running."""
    answer = await sim_client.post("/__simulator/config", json={"unknown_numbers": "failed"})
    assert answer.json()["unknown_numbers"] == "failed"
    assert (await _query(sim_client, sim_token, "9999"))["errno"] == "10004"
    await sim_client.post("/__simulator/config", json={"k2": True})
    assert "mute" not in (await _query(sim_client, sim_token, "6400"))["conferences"][0]
