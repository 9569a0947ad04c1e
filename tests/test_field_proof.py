"""Every firmware profile against the real gateway: tolerant reading and proven negatives.

Real gateway, real simulator (one per test), loopback HTTP; PBX calls are counted by the
simulator itself. Three things are proven here:

- a room setting a firmware leaves out is null (never a failed query), for every profile;
- "no such room" is cached only when proven: a short or failed batch is settled against the
  ``all`` listing, one call, cached and shared;
- the log names a room and a field once per cache TTL, however many requests and fetches.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any, Final

import httpx
import pytest

from gateway.app import create_app
from gateway.demo import demo_settings
from gateway.serving import LoopbackServer
from gateway.simulator import SimulatorConfig, SimulatorServer
from gateway.simulator.config import ABSENTABLE_FIELDS
from gateway.simulator.profiles import PROFILES, profile_config
from tests.gateway_stack import Stack, StackFactory
from tests.mutation_helpers import EVERY_SCOPE, scopes
from tests.timing import FakeClock

EVERY_FIELD: Final = """
  number name hasParticipantPassword hasModeratorPassword waitForModerator allowInvite
  moderators musicOnHold mute prompt
"""
ALL_ROOMS: Final = f"{{ conferences {{ {EVERY_FIELD} }} }}"
ONE_ROOM: Final = f'{{ conference(number: "6400") {{ {EVERY_FIELD} }} }}'
# Each wire field a firmware may leave out -> the schema field that must then be null.
SCHEMA_FIELD: Final = {
    "participantepassword": "hasParticipantPassword",
    "moderatorpassword": "hasModeratorPassword",
    "waitformoderator": "waitForModerator",
    "allowinvite": "allowInvite",
    "moderators": "moderators",
    "musiconhold": "musicOnHold",
    "mute": "mute",
    "prompt": "prompt",
}
UNKNOWN_PROFILES: Final = [
    "s-series-v2",
    "unknown-empty",
    "unknown-missing",
    "unknown-failed-10110",
    "field-worst",
]
PAIR: Final = '{ conferences(numbers: ["6405", "6999"]) { number name } }'


def pbx_name(stack: Stack, number: str) -> str:
    room = stack.pbx.book.get(number)
    assert room is not None
    return room["name"]


def rooms_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    assert "errors" not in result, result
    rooms: list[dict[str, Any]] = result["data"]["conferences"]
    return rooms


@pytest.mark.parametrize("profile", list(PROFILES))
async def test_field_proof_every_profile_answers_every_room(
    gateway_stack: StackFactory, profile: str
) -> None:
    """Every profile: all rooms answer, exactly the settings the firmware leaves out are null."""
    config = profile_config(profile)
    stack = await gateway_stack(sim_config=config)
    rooms = rooms_of(await stack.graphql(ALL_ROOMS))
    assert len(rooms) == 12
    left_out = {SCHEMA_FIELD[f] for f in config.fields_left_out()}
    for room in rooms:
        assert {field for field in left_out if room[field] is not None} == set()
        for field in set(SCHEMA_FIELD.values()) - left_out:
            assert room[field] is not None, (profile, room["number"], field)
    single = await stack.graphql(ONE_ROOM)
    assert "errors" not in single
    assert single["data"]["conference"] == rooms[0]


async def test_field_proof_room_without_any_setting_is_all_null(
    gateway_stack: StackFactory,
) -> None:
    """A firmware that leaves out every setting: rooms answer, every setting null, no error."""
    stack = await gateway_stack(sim_config=SimulatorConfig(absent_fields=ABSENTABLE_FIELDS))
    room = rooms_of(await stack.graphql(ALL_ROOMS))[0]
    assert room["number"] == "6400" and room["name"]
    assert {f: room[f] for f in SCHEMA_FIELD.values()} == dict.fromkeys(SCHEMA_FIELD.values())


async def test_field_proof_update_on_old_firmware_reads_back_nulls(
    gateway_stack: StackFactory,
) -> None:
    """updateConference on a pre-2021 PBX: applied, and the read-back has the nulls."""
    stack = await gateway_stack(sim_config=profile_config("pre-2021"), security=scopes(EVERY_SCOPE))
    result = await stack.graphql(
        'mutation { updateConference(input: {number: "6401", name: "Board"}) '
        f"{{ changedFields conference {{ {EVERY_FIELD} }} }} }}"
    )
    assert "errors" not in result, result
    room = result["data"]["updateConference"]["conference"]
    assert room["name"] == "Board"
    assert (room["musicOnHold"], room["mute"], room["prompt"]) == (None, None, None)
    assert room["allowInvite"] is not None


# --- negatives proven ------------------------------------------------------------------------


@pytest.mark.parametrize("profile", UNKNOWN_PROFILES)
async def test_field_proof_unknown_number_in_batch_is_settled_by_listing(
    gateway_stack: StackFactory, profile: str
) -> None:
    """6405+6999: 6405 answered, 6999 left out, with at most 2 PBX query calls; a second
    request within the TTL makes none."""
    stack = await gateway_stack(sim_config=profile_config(profile), cache_ttl=30)
    first = rooms_of(await stack.graphql(PAIR))
    assert first == [{"number": "6405", "name": pbx_name(stack, "6405")}]
    assert stack.calls() <= 2
    assert stack.pbx.stats.query_numbers[-1] == "all"  # the proof, not a guess
    calls = stack.calls()
    stack.clock.advance(29)
    again_single = await stack.graphql('{ conference(number: "6999") { number } }')
    assert again_single["data"] == {"conference": None}
    assert rooms_of(await stack.graphql(PAIR)) == first
    assert stack.calls() == calls


@pytest.mark.parametrize("profile", UNKNOWN_PROFILES)
async def test_field_proof_known_numbers_are_never_cached_as_unknown(
    gateway_stack: StackFactory, profile: str
) -> None:
    """A batch of known rooms plus unknown ones: every known room answers, on every profile,
    and the listing fetched for the proof serves the whole PBX (`conferences`) for free."""
    stack = await gateway_stack(sim_config=profile_config(profile))
    result = await stack.graphql(
        '{ conferences(numbers: ["6400", "6998", "6401", "6999", "6402"]) { number } }'
    )
    assert [r["number"] for r in rooms_of(result)] == ["6400", "6401", "6402"]
    calls = stack.calls()
    assert len(rooms_of(await stack.graphql("{ conferences { number } }"))) == 12
    assert stack.calls() == calls


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("s-series-v2", ["6999"]),
        ("unknown-empty", ["6999"]),
        ("unknown-missing", ["6999"]),
        ("unknown-failed-10110", ["6999", "all"]),
    ],
)
async def test_field_proof_single_number_answer_is_proof(
    gateway_stack: StackFactory, profile: str, expected: list[str]
) -> None:
    """A single-number answer without the room proves it unknown (one call); a failed one
    does not, and the listing settles it."""
    stack = await gateway_stack(sim_config=profile_config(profile))
    result = await stack.graphql('{ conference(number: "6999") { number } }')
    assert result == {"data": {"conference": None}}
    assert stack.pbx.stats.query_numbers == expected


async def test_field_proof_listing_is_shared_by_concurrent_short_batches(
    gateway_stack: StackFactory,
) -> None:
    """Ten concurrent requests, each a different short batch: one `all` call settles them."""
    stack = await gateway_stack(sim_config=profile_config("unknown-empty"))
    documents = [
        f'{{ conferences(numbers: ["{6400 + i}", "{6990 + i}"]) {{ number }} }}' for i in range(10)
    ]
    results = await asyncio.gather(*(stack.graphql(d) for d in documents))
    assert [rooms_of(r) for r in results] == [[{"number": str(6400 + i)}] for i in range(10)]
    assert stack.pbx.stats.query_numbers.count("all") == 1


async def test_field_proof_unproven_numbers_fail_when_the_listing_fails(
    gateway_stack: StackFactory,
) -> None:
    """When the listing that would settle a short batch fails, nothing is called unknown:
    the request fails (coded), and a later one, with the PBX back, answers correctly."""
    stack = await gateway_stack(sim_config=profile_config("unknown-empty"))
    stack.pbx.fail_next(2, "10004", endpoint="conference/query")  # the batch, then the listing
    failed = await stack.graphql(PAIR)
    assert failed["data"] is None
    assert failed["errors"][0]["extensions"]["code"] == "PBX_ERROR"
    assert stack.calls() == 2
    assert rooms_of(await stack.graphql(PAIR)) == [
        {"number": "6405", "name": pbx_name(stack, "6405")}
    ]


# --- the log, once per TTL ---------------------------------------------------------------------


def field_records(caplog: pytest.LogCaptureFixture, number: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "gateway.pbx.field_notes"
        and "'musiconhold'" in r.getMessage()
        and number in r.getMessage()
    ]


async def test_field_proof_log_names_room_and_field_once_per_ttl(
    gateway_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """pre-2021: 10 changes (each re-reads 6401) and 50 queries log "6401 lacks musiconhold"
    once; after the TTL, one more fetch logs it once more."""
    caplog.set_level(logging.INFO, logger="gateway.pbx.field_notes")
    stack = await gateway_stack(
        sim_config=profile_config("pre-2021"),
        security=scopes(EVERY_SCOPE),
        cache_ttl=30,
        revalidate_window=0,
    )
    for i in range(10):
        changed = await stack.graphql(
            f'mutation {{ updateConference(input: {{number: "6401", name: "Room {i}"}}) '
            "{ conference { musicOnHold } } }"
        )
        assert "errors" not in changed, changed
    for _ in range(50):
        rooms_of(await stack.graphql("{ conferences { number musicOnHold } }"))
    fetches = stack.calls()
    assert fetches >= 11  # ten read-backs and the listing: the room was decoded every time
    assert len(field_records(caplog, "6401")) == 1
    record = field_records(caplog, "6401")[0]
    assert record.levelno == logging.INFO
    assert "absent" in record.getMessage()
    stack.clock.advance(31)
    await stack.graphql('{ conference(number: "6401") { musicOnHold } }')
    await asyncio.sleep(0)
    assert stack.calls() > fetches
    assert len(field_records(caplog, "6401")) == 2


async def test_field_proof_log_never_carries_a_pin(
    gateway_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The field notes name fields, never values: no room's PIN appears in any log record."""
    caplog.set_level(logging.DEBUG)
    stack = await gateway_stack(sim_config=profile_config("field-worst"))
    rooms_of(await stack.graphql(ALL_ROOMS))
    pins = {
        room[field]
        for room in stack.pbx.book.all()
        for field in ("participantepassword", "moderatorpassword")
        if room.get(field)
    }
    assert pins
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "gateway.pbx.field_notes" in {r.name for r in caplog.records}
    assert not [pin for pin in pins if pin in text]


# --- rooms that cannot be read at all ------------------------------------------------------------
# The simulator refuses to hold such a room (its data rules), so a transport in front of the
# real simulator adds them to its answers: the one thing here only a doctored answer can do.

GARBLED: Final = {"number": "6450", "name": {"text": "not a string"}}
NUMBERLESS: Final = "a string where a room should be"


class Garbling(httpx.AsyncBaseTransport):
    """The real simulator over loopback, with unreadable rooms added to conference/query:
    6450 (a name that is an object) when asked for it or all, and a bare string in `all`."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if not request.url.path.endswith("/conference/query"):
            return response
        asked = json.loads(request.content).get("number", "")
        body = json.loads(await response.aread())
        rooms = body.get("conferences") or []
        if asked == "all" or "6450" in asked.split(","):
            rooms.insert(1, GARBLED)
        if asked == "all":
            rooms.insert(3, NUMBERLESS)
        if body.get("status") == "Success":
            body["conferences"] = rooms
        return httpx.Response(response.status_code, json=body)

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.fixture
async def garbled() -> AsyncIterator[Stack]:
    """The real gateway and simulator with the :class:`Garbling` transport between them."""
    async with AsyncExitStack() as exits:
        sim = await exits.enter_async_context(SimulatorServer(SimulatorConfig()))
        clock = FakeClock()
        settings = demo_settings(sim.base_url)
        settings = dataclasses.replace(settings, security=scopes(EVERY_SCOPE))
        app = create_app(settings, clock=clock, transport=Garbling())
        gateway = await exits.enter_async_context(LoopbackServer(app))
        await gateway.app.runtime.session.started()
        client = await exits.enter_async_context(
            httpx.AsyncClient(base_url=gateway.base_url, timeout=30)
        )
        yield Stack(sim=sim, gateway=gateway, client=client, clock=clock)


def error_paths(result: dict[str, Any]) -> list[list[str | int]]:
    for error in result.get("errors", []):
        assert error["extensions"]["code"] == "PBX_UNAVAILABLE", error
    return [error["path"] for error in result.get("errors", [])]


async def test_field_proof_unreadable_rooms_fail_only_their_place_in_all(garbled: Stack) -> None:
    """`conferences`: the two unreadable entries are null with an error at their index; the
    twelve rooms are answered."""
    result = await garbled.graphql("{ conferences { number } }")
    rooms = result["data"]["conferences"]
    assert len(rooms) == 14
    assert [i for i, room in enumerate(rooms) if room is None] == [1, 3]
    assert error_paths(result) == [["conferences", 1], ["conferences", 3]]
    assert "6450" in result["errors"][0]["message"]


async def test_field_proof_unreadable_room_fails_only_its_number(garbled: Stack) -> None:
    """By number: 6450 is null with an error at its path, its neighbours answer, one call;
    asked again within the TTL, no call (the unreadable answer is cached like any other)."""
    document = '{ conferences(numbers: ["6400", "6450", "6401"]) { number } }'
    result = await garbled.graphql(document)
    assert result["data"]["conferences"] == [{"number": "6400"}, None, {"number": "6401"}]
    assert error_paths(result) == [["conferences", 1]]
    single = await garbled.graphql('{ conference(number: "6450") { number } }')
    assert single["data"] == {"conference": None}
    assert error_paths(single) == [["conference"]]
    assert garbled.calls() == 1


async def test_field_proof_numberless_room_leaves_unknown_numbers_unproven(
    garbled: Stack,
) -> None:
    """The listing holds a room without a number: 6999, left out of a batch, may be it, so it
    is an error at its path, not "no such room"; 6400 is answered."""
    result = await garbled.graphql('{ conferences(numbers: ["6400", "6999"]) { number } }')
    assert result["data"]["conferences"] == [{"number": "6400"}, None]
    assert error_paths(result) == [["conferences", 1]]
    assert "6999 may be it" in result["errors"][0]["message"]


async def test_field_proof_unreadable_room_is_logged_once_per_ttl(
    garbled: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """Twenty requests for the unreadable room and the listing: one WARNING naming 6450."""
    caplog.set_level(logging.INFO, logger="gateway.pbx.field_notes")
    for _ in range(10):
        await garbled.graphql('{ conference(number: "6450") { number } }')
        await garbled.graphql("{ conferences { number } }")
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "6450" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert "not a string" not in warnings[0].getMessage()  # no values in the log
