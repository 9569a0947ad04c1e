"""The simulator's rooms: the default set, generated sets, JSON files and their validation."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from gateway.simulator import (
    ConferenceDataError,
    SimulatorConfig,
    SimulatorState,
    create_simulator_app,
    default_conferences,
    generate_conferences,
    load_conferences,
)
from gateway.simulator.conference_data import check_all
from gateway.simulator.conference_rules import FIELDS


def test_default_conferences_are_a_valid_dozen_from_6400() -> None:
    """Twelve valid rooms numbered 6400 to 6411 with distinct names."""
    rooms = default_conferences()
    assert [str(number) for number in range(6400, 6412)] == [room["number"] for room in rooms]
    assert len({room["name"] for room in rooms}) == 12
    assert rooms == check_all(rooms)


def test_generate_conferences_builds_valid_unique_rooms() -> None:
    """Generated rooms pass validation, have unique numbers and vary their values."""
    rooms = generate_conferences(500)
    assert rooms == check_all(rooms)
    assert {"", "4000", "4000,4001", "4002"} == {room["moderators"] for room in rooms}


def test_generate_conferences_handles_100k() -> None:
    """The maximum, 100,000 rooms, numbered consecutively from the first number."""
    rooms = generate_conferences(100_000, first_number=10_000)
    assert len(rooms) == 100_000
    assert (rooms[0]["number"], rooms[-1]["number"]) == ("10000", "109999")
    assert list(FIELDS) == list(rooms[-1])


def test_generate_conferences_refuses_out_of_range_count() -> None:
    """More than 100,000 or a negative count is a ValueError."""
    with pytest.raises(ValueError, match="between 0 and 100000"):
        generate_conferences(100_001)


def test_load_conferences_reads_list_and_object_shapes(tmp_path: Path) -> None:
    """A file holds either a list of rooms or ``{"conferences": [...]}``; K2 rooms get defaults."""
    room = {field: value for field, value in default_conferences()[0].items()}
    k2_room = {key: value for key, value in room.items() if key not in {"mute", "prompt"}}
    k2_room["number"] = "7000"
    as_list, as_object = tmp_path / "list.json", tmp_path / "object.json"
    as_list.write_text(json.dumps([room, k2_room]))
    as_object.write_text(json.dumps({"status": "Success", "conferences": [room]}))
    loaded = load_conferences(as_list)
    assert [room, {**k2_room, "mute": "no", "prompt": "default"}] == loaded
    assert [room] == load_conferences(as_object)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"rooms": []}', "expected a list of conferences"),
        ("[42]", "conference #0: must be a JSON object"),
        ('[{"number": "6400"}]', "conference #0 (number '6400'): missing field(s): name"),
        ('[{"number": "6400", "colour": "red"}]', "unknown field(s): colour"),
    ],
)
def test_load_conferences_invalid_file_names_the_problem(
    tmp_path: Path, content: str, message: str
) -> None:
    """A bad file raises ConferenceDataError naming the file, the record and the field."""
    path = tmp_path / "rooms.json"
    path.write_text(content)
    with pytest.raises(ConferenceDataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_conferences(path)


def test_load_conferences_invalid_value_names_field(tmp_path: Path) -> None:
    """A bad value names its room and field; a duplicate number is refused."""
    room = default_conferences()[0]
    path = tmp_path / "rooms.json"
    path.write_text(json.dumps([{**room, "prompt": "loud"}]))
    with pytest.raises(ConferenceDataError, match="field 'prompt'"):
        load_conferences(path)
    path.write_text(json.dumps([room, room]))
    with pytest.raises(ConferenceDataError, match="duplicate number"):
        load_conferences(path)


def test_load_conferences_missing_file_is_clear(tmp_path: Path) -> None:
    """A missing file is a ConferenceDataError, not an OSError traceback."""
    with pytest.raises(ConferenceDataError, match="cannot read"):
        load_conferences(tmp_path / "absent.json")


async def test_config_conferences_are_served() -> None:
    """Rooms given in the config are the ones ``all`` answers."""
    app = create_simulator_app(SimulatorConfig(conferences=generate_conferences(3)))
    state: SimulatorState = app.state.simulator
    assert [room["number"] for room in state.book.all()] == ["6400", "6401", "6402"]


async def test_conferences_admin_route_replaces_rooms(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState
) -> None:
    """``PUT /__simulator/conferences`` takes a list or ``{"generate": n}``; bad data is a 400."""
    answer = await sim_client.put("/__simulator/conferences", json={"generate": 25})
    assert answer.json() == {"count": 25}
    rooms = default_conferences()[:2]
    answer = await sim_client.put("/__simulator/conferences", json={"conferences": rooms})
    assert (answer.status_code, len(sim_state.book)) == (200, 2)
    bad = await sim_client.put("/__simulator/conferences", json={"conferences": [{"x": 1}]})
    assert bad.status_code == 400
    assert len(sim_state.book) == 2
