"""Live conferences in the simulator: rooms in session, ``conference/query_in_session``, the
member controls and their rules, each counted, driven over the admin API and in Python."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.simulator import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    SimulatorState,
    create_simulator_app,
    password_digest,
    profile_config,
)
from gateway.simulator.live_endpoints import K2_CONTROLS, S_SERIES_CONTROLS

API = "/api/v2.0.0/"
# Default rooms: 6400 Sales (no moderators), 6402 Board Room (waitformoderator=yes,
# moderators 4000), 6403 Support Bridge (moderators 4000,4001, no waiting).
BOARD, BRIDGE, SALES = "6402", "6403", "6400"


async def _call(client: httpx.AsyncClient, token: str, endpoint: str, **body: Any) -> Any:
    response = await client.post(f"{API}{endpoint}?token={token}", json=body)
    return response.json()


async def _login(client: httpx.AsyncClient) -> str:
    body = {"username": DEMO_USERNAME, "password": password_digest(DEMO_PASSWORD)}
    token: str = (await client.post(f"{API}login", json=body)).json()["token"]
    return token


async def _admin(client: httpx.AsyncClient, path: str, **body: Any) -> httpx.Response:
    return await client.post(f"/__simulator/live/{path}", json=body)


def _statuses(state: SimulatorState, room: str) -> dict[str, str]:
    session = state.live.session(room)
    assert session is not None
    return {member.number: member.memberstatus for member in session.members}


async def test_live_query_in_session_documented_shape(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """A room in session is answered under ``conference`` with callid, number, name and members
    as ``ext``/``inbound`` objects carrying number, channelid and memberstatus."""
    await _admin(sim_client, "join", number=BRIDGE, member="4001")
    await _admin(sim_client, "join", number=BRIDGE, member="0551234567", kind="inbound", to="88")
    answer = await _call(sim_client, sim_token, "conference/query_in_session", number=BRIDGE)
    assert answer["status"] == "Success"
    (room,) = answer["conference"]
    assert (room["conferencenumber"], room["conferencename"]) == (BRIDGE, "Support Bridge")
    assert room["callid"].count(".") == 1
    ext, inbound = room["members"]
    assert ext == {
        "ext": {"number": "4001", "channelid": ext["ext"]["channelid"], "memberstatus": "ANSWERED"}
    }
    assert ext["ext"]["channelid"].startswith("PJSIP/4001-")
    assert inbound["inbound"]["from"] == "0551234567"
    assert inbound["inbound"]["to"] == "88"
    assert inbound["inbound"]["trunkname"] == "siptrunk"
    assert inbound["inbound"]["channelid"].startswith("PJSIP/trunk-siptrunk-endpoint-")
    assert sim_state.stats.calls["conference/query_in_session"] == 1
    assert sim_state.stats.in_session_numbers == [BRIDGE]


async def test_live_query_in_session_all_and_lists(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """``all`` answers every room in session in numeric order; a comma list only the rooms in
    session among those asked; idle and unknown numbers are left out by default."""
    sim_state.live_join(BRIDGE, "4001")
    sim_state.live_join(SALES, "4007")
    everything = await _call(sim_client, sim_token, "conference/query_in_session", number="all")
    assert [c["conferencenumber"] for c in everything["conference"]] == [SALES, BRIDGE]
    listed = await _call(
        sim_client, sim_token, "conference/query_in_session", number=f"{BRIDGE},6401,9999"
    )
    assert [c["conferencenumber"] for c in listed["conference"]] == [BRIDGE]
    idle = await _call(sim_client, sim_token, "conference/query_in_session", number="6401")
    assert idle == {"status": "Success", "conference": []}


async def test_live_query_in_session_idle_rooms_failed_plays_10110() -> None:
    """``idle_rooms=failed`` answers a batch with an idle or unknown room Failed 10110 (the
    S-Series v2 change log's bug); a batch of rooms in session still succeeds."""
    app = create_simulator_app(profile_config("s-series-v2", idle_rooms="failed"))
    state: SimulatorState = app.state.simulator
    state.live_join(BRIDGE, "4001")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://p") as pbx:
        token = await _login(pbx)
        idle = await _call(pbx, token, "conference/query_in_session", number=f"{BRIDGE},6401")
        busy = await _call(pbx, token, "conference/query_in_session", number=BRIDGE)
    assert idle == {"status": "Failed", "errno": "10110"}
    assert [c["conferencenumber"] for c in busy["conference"]] == [BRIDGE]


async def test_live_wait_for_moderator_holds_and_releases(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """In a waitformoderator room members are HOLD until a moderator joins, dialled-in again
    when one is in, and back on HOLD when the last moderator leaves (chosen)."""
    await _admin(sim_client, "join", number=BOARD, member="4007")
    await _admin(sim_client, "join", number=BOARD, member="0301112222", kind="inbound")
    assert _statuses(sim_state, BOARD) == {"4007": "HOLD", "0301112222": "HOLD"}
    joined = (await _admin(sim_client, "join", number=BOARD, member="4000")).json()
    assert (joined["moderator"], joined["memberstatus"]) == (True, "ANSWERED")
    assert _statuses(sim_state, BOARD) == {
        "4007": "ANSWERED",
        "0301112222": "ANSWERED",
        "4000": "ANSWERED",
    }
    await _admin(sim_client, "leave", number=BOARD, member="4000")
    assert _statuses(sim_state, BOARD) == {"4007": "HOLD", "0301112222": "HOLD"}
    answer = await _call(sim_client, sim_token, "conference/query_in_session", number=BOARD)
    assert {m["ext"]["memberstatus"] for m in answer["conference"][0]["members"] if "ext" in m} == {
        "HOLD"
    }


async def test_live_moderator_pin_makes_a_moderator(sim_state: SimulatorState) -> None:
    """Joining with the moderator PIN (``moderator=True``) releases HOLD like a listed one."""
    sim_state.live_join(BOARD, "4007")
    sim_state.live_join(BOARD, "4011", moderator=True)
    assert _statuses(sim_state, BOARD) == {"4007": "ANSWERED", "4011": "ANSWERED"}


async def test_live_admin_refuses_what_the_pbx_would(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState
) -> None:
    """Admin mistakes answer 400 with the reason and change nothing: unknown room, a number
    twice, a bad number or kind, leaving a room nobody is in."""
    await _admin(sim_client, "join", number=BRIDGE, member="4001")
    cases = [
        ("join", {"number": "9999", "member": "4001"}, "no conference"),
        ("join", {"number": BRIDGE, "member": "4001"}, "already in room"),
        ("join", {"number": BRIDGE, "member": "40a1"}, "digits"),
        ("join", {"number": BRIDGE, "member": "4002", "kind": "fax"}, "kind must be"),
        ("leave", {"number": "6401", "member": "4001"}, "not in session"),
        ("leave", {"number": BRIDGE, "member": "4999"}, "not in room"),
        ("mute", {"number": BRIDGE}, "'member' is required"),
    ]
    for path, body, reason in cases:
        response = await _admin(sim_client, path, **body)
        assert response.status_code == 400, (path, body)
        assert reason in response.json()["error"]
    assert _statuses(sim_state, BRIDGE) == {"4001": "ANSWERED"}
    assert sim_state.stats.live["events_generated"] == 1


async def test_live_admin_view_mute_and_clear(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState
) -> None:
    """``GET live`` shows mute, moderator and seconds in the room; mute changes no participant
    count so it makes no event; ``clear`` hangs everyone up, one event per leave."""
    await _admin(sim_client, "join", number=BRIDGE, member="4001")
    await _admin(sim_client, "join", number=BRIDGE, member="4009")
    sim_state.advance_time(42)
    muted = (await _admin(sim_client, "mute", number=BRIDGE, member="4009")).json()
    assert muted["muted"] is True
    view = (await sim_client.get("/__simulator/live")).json()
    (session,) = view["sessions"]
    assert [(m["number"], m["moderator"], m["muted"]) for m in session["members"]] == [
        ("4001", True, False),
        ("4009", False, True),
    ]
    assert session["members"][0]["seconds_in_room"] >= 42
    assert sim_state.stats.live["events_generated"] == 2
    cleared = (await _admin(sim_client, "clear")).json()
    assert cleared == {"left": 2}
    assert sim_state.live.sessions() == []
    assert sim_state.stats.live["events_generated"] == 4
    events = (await sim_client.get("/__simulator/live/events")).json()["events"]
    assert [len(e["members"]) for e in events] == [1, 2, 1, 0]


async def test_live_controls_refuse_blank_numbers_without_acting(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """Doctor's probe body ``{"number": ""}`` is refused with 10004 by every live endpoint, as
    is a blank operator or member list; nobody is kicked, muted or invited."""
    sim_state.live_join(BRIDGE, "4001")
    sim_state.live_join(BRIDGE, "4009")
    for endpoint in ("conference/query_in_session", *S_SERIES_CONTROLS):
        answer = await _call(sim_client, sim_token, endpoint, number="")
        assert answer == {"status": "Failed", "errno": "10004"}, endpoint
    for body in (
        {"number": BRIDGE, "operator": "", "membernumber": "4009"},
        {"number": BRIDGE, "operator": "4001", "membernumber": " "},
        {"number": BRIDGE, "operator": "4001", "membernumber": ","},
    ):
        answer = await _call(sim_client, sim_token, "conference/kick_member", **body)
        assert answer == {"status": "Failed", "errno": "10004"}, body
    assert _statuses(sim_state, BRIDGE) == {"4001": "ANSWERED", "4009": "ANSWERED"}
    assert sim_state.stats.live["controls_refused"] == 7
    assert sim_state.stats.live["kick"] == 0


async def test_live_controls_only_a_moderator_in_the_room_may_act(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """The operator must be a moderator who is in the room (10006, chosen), the room must be in
    session (10110), and every named member must be in it; a refusal changes nothing."""
    sim_state.live_join(BRIDGE, "4001")  # a moderator of 6403
    sim_state.live_join(BRIDGE, "4009")
    sim_state.live_join(BRIDGE, "4010")
    cases = [
        ({"number": BRIDGE, "operator": "4009", "membernumber": "4010"}, "10006"),  # not one
        ({"number": BRIDGE, "operator": "4000", "membernumber": "4010"}, "10006"),  # not in
        ({"number": BRIDGE, "operator": "4001", "membernumber": "4010,4999"}, "10006"),
        ({"number": "6401", "operator": "4001", "membernumber": "4010"}, "10110"),  # idle
        ({"number": "9999", "operator": "4001", "membernumber": "4010"}, "10110"),  # unknown
    ]
    for body, errno in cases:
        for endpoint in ("conference/kick_member", "conference/mute_member"):
            answer = await _call(sim_client, sim_token, endpoint, **body)
            assert answer == {"status": "Failed", "errno": errno}, (endpoint, body)
    assert _statuses(sim_state, BRIDGE) == {
        "4001": "ANSWERED",
        "4009": "ANSWERED",
        "4010": "ANSWERED",
    }
    assert not any(m.muted for m in sim_state.live.sessions()[0].members)
    assert sim_state.stats.live["controls_refused"] == 10
    assert sim_state.stats.live["events_generated"] == 3


async def test_live_kick_mute_unmute_and_all(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """A moderator mutes a comma list, unmutes one, mutes ``all`` (everyone but themself), then
    kicks two members: one event per member who left, each counted."""
    for number in ("4001", "4009", "4010", "4011"):
        sim_state.live_join(BRIDGE, number)
    base = {"number": BRIDGE, "operator": "4001"}
    ok = {"status": "Success"}
    assert (
        await _call(
            sim_client, sim_token, "conference/mute_member", **base, membernumber="4009,4010"
        )
        == ok
    )
    assert (
        await _call(sim_client, sim_token, "conference/unmute_member", **base, membernumber="4010")
        == ok
    )
    session = sim_state.live.session(BRIDGE)
    assert session is not None
    assert {m.number: m.muted for m in session.members} == {
        "4001": False,
        "4009": True,
        "4010": False,
        "4011": False,
    }
    assert (
        await _call(sim_client, sim_token, "conference/mute_member", **base, membernumber="all")
        == ok
    )
    assert {m.number: m.muted for m in session.members} == {
        "4001": False,
        "4009": True,
        "4010": True,
        "4011": True,
    }
    before = sim_state.stats.live["events_generated"]
    assert (
        await _call(
            sim_client, sim_token, "conference/kick_member", **base, membernumber="4009,4011"
        )
        == ok
    )
    assert _statuses(sim_state, BRIDGE) == {"4001": "ANSWERED", "4010": "ANSWERED"}
    assert sim_state.stats.live["events_generated"] - before == 2
    assert (sim_state.stats.live["mute"], sim_state.stats.live["unmute"]) == (5, 1)
    assert sim_state.stats.live["kick"] == 2
    assert (
        await _call(sim_client, sim_token, "conference/kick_member", **base, membernumber="all")
        == ok
    )
    assert _statuses(sim_state, BRIDGE) == {"4001": "ANSWERED"}


async def test_live_add_member_rings_then_joins_with_answer(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """``add_member`` with ``invitees_answer`` off leaves the invitees ringing (not listed, no
    event); each joins with ANSWER when they pick up; a long number goes out a trunk."""
    sim_state.configure(invitees_answer=False)
    sim_state.live_join(BRIDGE, "4001")
    answer = await _call(
        sim_client,
        sim_token,
        "conference/add_member",
        number=BRIDGE,
        operator="4001",
        invitemember="4005,0209998888",
        dialpermission="4001",
    )
    assert answer == {"status": "Success"}
    assert _statuses(sim_state, BRIDGE) == {"4001": "ANSWERED"}
    assert (await sim_client.get("/__simulator/live")).json()["sessions"][0]["ringing"] == [
        "4005",
        "0209998888",
    ]
    assert sim_state.stats.live["events_generated"] == 1
    await _admin(sim_client, "answer", number=BRIDGE, member="4005")
    await _admin(sim_client, "decline", number=BRIDGE, member="0209998888")
    assert _statuses(sim_state, BRIDGE) == {"4001": "ANSWERED", "4005": "ANSWER"}
    query = await _call(sim_client, sim_token, "conference/query_in_session", number=BRIDGE)
    assert query["conference"][0]["members"][1]["ext"]["memberstatus"] == "ANSWER"
    assert sim_state.stats.live["invite"] == 2
    assert sim_state.stats.live["events_generated"] == 2
    sim_state.configure(invitees_answer=True)
    await _call(
        sim_client,
        sim_token,
        "conference/add_member",
        number=BRIDGE,
        operator="4001",
        invitemember="0209998888",
    )
    session = sim_state.live.session(BRIDGE)
    assert session is not None
    outbound = session.find("0209998888")
    assert outbound is not None
    assert outbound.wire() == {
        "outbound": {
            "from": BRIDGE,
            "to": "0209998888",
            "trunkname": "siptrunk",
            "channelid": outbound.channelid,
            "memberstatus": "ANSWER",
        }
    }


async def test_live_add_member_refuses_members_already_there(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """Inviting someone already in the room, ``all`` or a malformed number is refused (10006)
    and nobody is called."""
    sim_state.live_join(BRIDGE, "4001")
    sim_state.live_join(BRIDGE, "4009")
    for invitees in ("4009", "all", "4005,12ab"):
        answer = await _call(
            sim_client,
            sim_token,
            "conference/add_member",
            number=BRIDGE,
            operator="4001",
            invitemember=invitees,
        )
        assert answer == {"status": "Failed", "errno": "10006"}, invitees
    assert _statuses(sim_state, BRIDGE) == {"4001": "ANSWERED", "4009": "ANSWERED"}
    assert sim_state.stats.live["invite"] == 0


@pytest.mark.parametrize(
    ("profile", "present"),
    [
        ("s-series-v2", {"conference/query_in_session", *S_SERIES_CONTROLS}),
        ("k2-controls", {"conference/query_in_session", *K2_CONTROLS}),
        ("no-live", set()),
    ],
)
async def test_live_endpoints_per_profile(profile: str, present: set[str]) -> None:
    """Each profile has its live endpoints; the others answer 10003 before any rule runs."""
    app = create_simulator_app(profile_config(profile))
    every = {"conference/query_in_session", *S_SERIES_CONTROLS, *K2_CONTROLS}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://p") as pbx:
        token = await _login(pbx)
        answers = {
            endpoint: await _call(pbx, token, endpoint, number="") for endpoint in sorted(every)
        }
    for endpoint, answer in answers.items():
        expected = "10004" if endpoint in present else "10003"
        assert answer == {"status": "Failed", "errno": expected}, endpoint


async def test_live_k2_mute_names_act() -> None:
    """Under ``k2-controls`` ``conference/mute`` and ``conference/unmute`` do what the S-Series
    names do."""
    app = create_simulator_app(profile_config("k2-controls"))
    state: SimulatorState = app.state.simulator
    state.live_join(BRIDGE, "4001")
    state.live_join(BRIDGE, "4009")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://p") as pbx:
        token = await _login(pbx)
        args = {"number": BRIDGE, "operator": "4001", "membernumber": "4009"}
        muted = await _call(pbx, token, "conference/mute", **args)
        session = state.live.session(BRIDGE)
        assert session is not None and session.members[1].muted
        unmuted = await _call(pbx, token, "conference/unmute", **args)
    assert muted == unmuted == {"status": "Success"}
    assert not session.members[1].muted
    assert (state.stats.live["mute"], state.stats.live["unmute"]) == (1, 1)


async def test_live_switches_are_validated_at_run_time(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState
) -> None:
    """``POST /__simulator/config`` takes the live switches, validated like at start; a bad
    value answers 400 and changes nothing; the report port is not a run-time switch."""
    changed = await sim_client.post(
        "/__simulator/config", json={"member_controls": "k2", "events": False, "transport": "HTTP"}
    )
    assert changed.status_code == 200
    assert (changed.json()["member_controls"], changed.json()["events"]) == ("k2", False)
    for body in (
        {"member_controls": "asterisk"},
        {"idle_rooms": "maybe"},
        {"transport": "UDP"},
        {"control_refused_errno": "x1"},
        {"report_port": 9},
    ):
        refused = await sim_client.post("/__simulator/config", json=body)
        assert refused.status_code == 400, body
    assert (sim_state.config.member_controls, sim_state.config.transport) == ("k2", "HTTP")


async def test_live_session_ends_with_its_last_member(sim_state: SimulatorState) -> None:
    """When the last member leaves, the session ends: invitees still ringing are hung up, and
    the next joiner starts a new call id."""
    sim_state.configure(invitees_answer=False)
    first = sim_state.live_join(BRIDGE, "4001")
    sim_state.live_invite(BRIDGE, "4005")
    session = sim_state.live.session(BRIDGE)
    assert session is not None
    callid = session.callid
    sim_state.live_leave(BRIDGE, first["channelid"])
    assert sim_state.live.session(BRIDGE) is None
    sim_state.live_join(BRIDGE, "4009")
    again = sim_state.live.session(BRIDGE)
    assert again is not None and again.callid != callid and again.ringing == []
