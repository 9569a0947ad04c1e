"""``Conference.session``: who is in a room now, against the real simulator and gateway.

Counts come from the simulator's stats (``conference/query_in_session`` calls); the gateway's
fake clock moves the session TTL without sleeping.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import pytest

from gateway.error_code import ErrorCode
from gateway.errors import PbxTimeoutError
from gateway.pbx.sessions_query import (
    LiveSession,
    MemberNotes,
    decode_listing,
    query_in_session,
)
from gateway.session_cache import SessionCache
from gateway.simulator import SimulatorConfig
from gateway.simulator.profiles import profile_config
from tests.gateway_stack import Stack, StackFactory
from tests.timing import FakeClock

IN_SESSION = "conference/query_in_session"
PM, SALES, BOARD = "6401", "6400", "6402"
CALLER = "+442071838750"

SESSION_QUERY = """
query Room($number: String!) {
  conference(number: $number) {
    number name
    session { participants { id kind number fromNumber toNumber trunkName status } }
  }
}
"""


def _channel_ids(stack: Stack) -> list[str]:
    sessions: list[dict[str, Any]] = stack.pbx.live_json()["sessions"]
    return [member["channelid"] for session in sessions for member in session["members"]]


async def _two_in_pm(stack: Stack) -> None:
    stack.pbx.live_join(PM, "4001")
    stack.pbx.live_join(PM, CALLER, kind="inbound", to=PM, trunk="BT-SIP")


async def test_session_lists_participants_in_one_pbx_call(gateway_stack: StackFactory) -> None:
    """Two members in 6401: their kinds, numbers, statuses and ids, from one PBX call."""
    stack = await gateway_stack()
    await _two_in_pm(stack)

    body = await stack.graphql(SESSION_QUERY, {"number": PM})

    assert "errors" not in body
    people = body["data"]["conference"]["session"]["participants"]
    assert [(p["kind"], p["number"], p["status"]) for p in people] == [
        ("EXTENSION", "4001", "JOINED"),
        ("INBOUND", CALLER, "JOINED"),
    ]
    assert people[0]["fromNumber"] is None and people[0]["trunkName"] is None
    assert (people[1]["fromNumber"], people[1]["toNumber"], people[1]["trunkName"]) == (
        CALLER,
        PM,
        "BT-SIP",
    )
    ids = [p["id"] for p in people]
    assert len(set(ids)) == 2 and all(re.fullmatch(r"[0-9a-f]{20}", i) for i in ids)
    assert stack.calls(IN_SESSION) == 1


async def test_session_never_shows_channel_ids(gateway_stack: StackFactory) -> None:
    """The PBX's channel ids (and their PJSIP shape) appear nowhere in the answer."""
    stack = await gateway_stack()
    await _two_in_pm(stack)

    response = await stack.client.post(
        "/graphql", json={"query": SESSION_QUERY, "variables": {"number": PM}}
    )

    channels = _channel_ids(stack)
    assert len(channels) == 2
    assert all(channel not in response.text for channel in channels)
    assert "PJSIP" not in response.text and "channel" not in response.text.lower()


async def test_session_cached_within_ttl_then_asked_again(gateway_stack: StackFactory) -> None:
    """Within GATEWAY_SESSION_TTL a repeat costs no PBX call; after it, one; ids stay stable."""
    stack = await gateway_stack(session_ttl=2.0)
    await _two_in_pm(stack)

    first = await stack.graphql(SESSION_QUERY, {"number": PM})
    stack.clock.advance(1.5)
    second = await stack.graphql(SESSION_QUERY, {"number": PM})
    assert stack.calls(IN_SESSION) == 1

    stack.clock.advance(1.0)
    third = await stack.graphql(SESSION_QUERY, {"number": PM})
    assert stack.calls(IN_SESSION) == 2
    ids = [
        [p["id"] for p in b["data"]["conference"]["session"]["participants"]]
        for b in (first, second, third)
    ]
    assert ids[0] == ids[1] == ids[2]


async def test_session_answer_kept_by_no_cache(gateway_stack: StackFactory) -> None:
    """Past the session TTL a repeat shows who joined since, although rooms are cached 30 s;
    a GET answer holding a session goes out no-store."""
    stack = await gateway_stack(session_ttl=2.0, cache_ttl=30)
    stack.pbx.live_join(PM, "4001")
    await stack.graphql(SESSION_QUERY, {"number": PM})

    stack.pbx.live_join(PM, "4002")
    stack.clock.advance(3.0)
    later = await stack.graphql(SESSION_QUERY, {"number": PM})
    response = await stack.client.get(
        "/graphql",
        params={"query": SESSION_QUERY, "variables": json.dumps({"number": PM})},
        headers={"accept": "application/json"},
    )

    numbers = [p["number"] for p in later["data"]["conference"]["session"]["participants"]]
    assert numbers == ["4001", "4002"]
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert stack.calls("conference/query") == 1  # the room itself came from the store's cache


@pytest.mark.parametrize("idle_rooms", ["omit", "failed"])
async def test_session_null_when_nobody_is_in_the_room(
    gateway_stack: StackFactory, idle_rooms: str
) -> None:
    """A room nobody is in answers session: null, without an error, however the PBX
    answers for idle rooms (left out, or 10110)."""
    stack = await gateway_stack(sim_config=SimulatorConfig(idle_rooms=idle_rooms))  # type: ignore[arg-type]
    await _two_in_pm(stack)

    body = await stack.graphql(SESSION_QUERY, {"number": SALES})

    assert "errors" not in body
    assert body["data"]["conference"]["number"] == SALES
    assert body["data"]["conference"]["session"] is None
    assert stack.calls(IN_SESSION) == 1


async def test_session_statuses_invited_and_waiting(gateway_stack: StackFactory) -> None:
    """An invitee who picked up is INVITED, a member waiting for the moderator is
    WAITING_FOR_MODERATOR, a number the room called out to is OUTBOUND under its number."""
    stack = await gateway_stack(sim_config=SimulatorConfig(invitees_answer=False))
    stack.pbx.live_join(PM, "4001")
    stack.pbx.live_invite(PM, "4005")
    stack.pbx.live_answer(PM, "4005")
    stack.pbx.live_join(PM, "0123456789", kind="outbound", trunk="BT-SIP")
    stack.pbx.live_join(BOARD, "4007")  # Board Room waits for its moderator, 4000

    body = await stack.graphql(
        """{ pm: conference(number: "6401") {
               session { participants { kind number status toNumber } } }
             board: conference(number: "6402") { session { participants { number status } } } }"""
    )

    assert "errors" not in body
    pm = body["data"]["pm"]["session"]["participants"]
    assert [(p["kind"], p["number"], p["status"]) for p in pm] == [
        ("EXTENSION", "4001", "JOINED"),
        ("EXTENSION", "4005", "INVITED"),
        ("OUTBOUND", "0123456789", "JOINED"),
    ]
    assert pm[2]["toNumber"] == "0123456789"
    assert body["data"]["board"]["session"]["participants"] == [
        {"number": "4007", "status": "WAITING_FOR_MODERATOR"}
    ]
    assert stack.calls(IN_SESSION) == 1


async def test_session_batches_aliases_and_list_into_one_call(gateway_stack: StackFactory) -> None:
    """session on five aliased rooms and on every room of `conferences` makes exactly one
    conference/query_in_session."""
    stack = await gateway_stack()
    await _two_in_pm(stack)
    stack.pbx.live_join(BOARD, "4000")
    aliases = " ".join(
        f'r{n}: conference(number: "{n}") {{ session {{ participants {{ id }} }} }}'
        for n in ("6400", "6401", "6402", "6403", "6404")
    )

    body = await stack.graphql(
        f"{{ {aliases} conferences {{ number session {{ participants {{ number }} }} }} }}"
    )

    assert "errors" not in body
    assert stack.calls(IN_SESSION) == 1
    in_session = {
        room["number"]: len(room["session"]["participants"])
        for room in body["data"]["conferences"]
        if room["session"] is not None
    }
    assert in_session == {PM: 2, BOARD: 1}
    assert body["data"]["r6400"]["session"] is None
    assert len(body["data"]["r6401"]["session"]["participants"]) == 2


async def test_session_concurrent_requests_share_one_call(gateway_stack: StackFactory) -> None:
    """Ten concurrent cold requests for sessions make one PBX call (single-flight)."""
    stack = await gateway_stack()
    await _two_in_pm(stack)
    await stack.graphql('{ conference(number: "6401") { name } }')  # the room itself cached

    bodies = await asyncio.gather(
        *(stack.graphql(SESSION_QUERY, {"number": PM}) for _ in range(10))
    )

    assert all(len(b["data"]["conference"]["session"]["participants"]) == 2 for b in bodies)
    assert stack.calls(IN_SESSION) == 1


async def test_session_feature_unavailable_without_live_endpoints(
    gateway_stack: StackFactory,
) -> None:
    """Profile no-live (10003): FEATURE_UNAVAILABLE at the session path only, pointing to
    the doctor; the rest of the room is answered."""
    stack = await gateway_stack(sim_config=profile_config("no-live"))

    body = await stack.graphql(SESSION_QUERY, {"number": PM})

    assert body["data"]["conference"] == {"number": PM, "name": "PM", "session": None}
    (error,) = body["errors"]
    assert error["path"] == ["conference", "session"]
    assert error["extensions"]["code"] == ErrorCode.FEATURE_UNAVAILABLE
    assert error["extensions"]["errno"] == "10003"
    assert "pbx-gateway doctor" in error["message"]
    assert stack.calls(IN_SESSION) == 1


async def test_sessions_query_single_idle_room_is_no_session(gateway_stack: StackFactory) -> None:
    """query_in_session: a single idle room's 10110 is no session; a comma list failed by
    10110 is asked again as `all` and answers the room in session."""
    stack = await gateway_stack(sim_config=SimulatorConfig(idle_rooms="failed"))
    stack.pbx.live_join(PM, "4001")
    session = stack.gateway_runtime().session

    assert await query_in_session(session, [SALES]) == {}
    found = await query_in_session(session, [SALES, PM])

    assert list(found) == [PM]
    assert [m.number for m in found[PM].members] == ["4001"]
    assert stack.pbx.stats.in_session_numbers == [SALES, f"{SALES},{PM}", "all"]


def test_decode_listing_reads_tolerantly(caplog: pytest.LogCaptureFixture) -> None:
    """Absent fields are None, an unreadable member is skipped and logged once, a conference
    without a number is skipped."""
    entries = [
        {
            "conferencenumber": "6401",
            "members": [
                {"ext": {"number": "4001"}},
                "garbage",
                {"inbound": {"from": "0123", "channelid": "PJSIP/x", "memberstatus": "HOLD"}},
                {"ext": {"number": "4002"}, "inbound": {}},
            ],
        },
        {"conferencename": "no number", "members": []},
    ]
    notes = MemberNotes(60)

    with caplog.at_level(logging.WARNING, logger="gateway.pbx.sessions_query"):
        first = decode_listing(entries, notes)
        second = decode_listing(entries, notes)

    assert first == second and list(first) == ["6401"]
    room = first["6401"]
    assert room.name is None and room.callid is None
    ext, inbound = room.members
    assert (ext.kind, ext.number, ext.channelid, ext.memberstatus) == ("ext", "4001", None, None)
    assert (inbound.kind, inbound.from_number, inbound.to_number, inbound.trunk) == (
        "inbound",
        "0123",
        None,
        None,
    )
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3  # member 1, member 3, the numberless entry: once each
    assert all("PJSIP" not in message for message in messages)


async def test_session_never_served_stale(gateway_stack: StackFactory) -> None:
    """Past the TTL, a PBX answer that is not the API's gives session: null with
    PBX_UNAVAILABLE at its path (the room is still answered); the error is not kept."""
    stack = await gateway_stack(session_ttl=2.0)
    await _two_in_pm(stack)
    await stack.graphql(SESSION_QUERY, {"number": PM})
    stack.clock.advance(3.0)
    stack.pbx.garbage_next(1, "html", endpoint=IN_SESSION)

    failed = await stack.graphql(SESSION_QUERY, {"number": PM})
    again = await stack.graphql(SESSION_QUERY, {"number": PM})

    assert failed["data"]["conference"] == {"number": PM, "name": "PM", "session": None}
    (error,) = failed["errors"]
    assert (error["path"], error["extensions"]["code"]) == (
        ["conference", "session"],
        ErrorCode.PBX_UNAVAILABLE,
    )
    assert len(again["data"]["conference"]["session"]["participants"]) == 2
    assert stack.calls(IN_SESSION) == 3


async def test_session_cache_deadline_leaves_the_shared_fetch_running() -> None:
    """A request whose deadline passes gets PbxTimeoutError; the fetch it started goes on
    and answers the next request (one fetch in all)."""
    release = asyncio.Event()
    room = LiveSession(number=PM, name="PM", callid="1.100", members=())

    async def slow_listing() -> dict[str, LiveSession]:
        await release.wait()
        return {PM: room}

    clock = FakeClock()
    cache = SessionCache(slow_listing, ttl=2.0, clock=clock)

    (timed_out,) = await cache.get_many([PM], deadline=clock() + 0.05)
    release.set()
    answered = await cache.get_many([PM, SALES])

    assert isinstance(timed_out, PbxTimeoutError)
    assert answered == [room, None]
    assert cache.stats.fetches == 1
