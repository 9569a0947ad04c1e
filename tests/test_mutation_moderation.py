"""The moderator controls end to end: mute, unmute, remove and invite participants of a
running room on the simulated PBX, through the gateway with API keys and scopes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final

import pytest

from gateway.security.identity import MODERATE, READ, WRITE
from gateway.simulator import SimulatorState
from gateway.simulator.profiles import profile_config
from tests.gateway_stack import Stack, StackFactory
from tests.mutation_helpers import error_of
from tests.security_helpers import api_key_security, write_keys

# Default rooms: 6403 Support Bridge (moderators 4000,4001), 6401 idle.
BRIDGE: Final = "6403"
CONTROLS: Final = (
    "conference/mute_member",
    "conference/unmute_member",
    "conference/mute",
    "conference/unmute",
    "conference/kick_member",
    "conference/add_member",
)
PAYLOAD: Final = "{ number action operator members all }"


def _document(field: str, input_type: str = "ConferenceParticipantsInput") -> str:
    return f"mutation Act($input: {input_type}!) {{ {field}(input: $input) {PAYLOAD} }}"


MUTE: Final = _document("muteParticipants")
UNMUTE: Final = _document("unmuteParticipants")
REMOVE: Final = _document("removeParticipants")
INVITE: Final = _document("inviteParticipants", "InviteParticipantsInput")


async def _stack(
    gateway_stack: StackFactory, tmp_path: Path, scopes: set[str], **sim: Any
) -> tuple[Stack, str]:
    """A stack with API-key auth and one key holding ``scopes``; the key."""
    stored, plain = write_keys(tmp_path, {"console": scopes})
    sim_config = profile_config(sim.pop("profile")) if "profile" in sim else None
    stack = await gateway_stack(security=api_key_security(stored), sim_config=sim_config)
    return stack, plain["console"]


async def _act(stack: Stack, key: str, document: str, **fields: Any) -> dict[str, Any]:
    return await stack.graphql(document, {"input": fields}, headers={"X-API-Key": key})


def _in_room(pbx: SimulatorState, number: str = BRIDGE) -> dict[str, bool]:
    """Who is in the room on the PBX, and whether each is muted."""
    session = pbx.live.session(number)
    return {} if session is None else {m.number: m.muted for m in session.members}


def _control_calls(stack: Stack) -> dict[str, int]:
    return {name: stack.calls(name) for name in CONTROLS if stack.calls(name)}


def _audit(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.__dict__["fields"] for r in caplog.records if r.name == "gateway.audit"]


def _join(pbx: SimulatorState, *numbers: str) -> None:
    for number in numbers:
        pbx.live_join(BRIDGE, number)


async def test_moderation_mute_unmute_remove_change_the_room_with_one_call_each(
    gateway_stack: StackFactory, tmp_path: Path
) -> None:
    """A moderator in the room mutes two, unmutes one, removes one: the PBX's room follows,
    each action is exactly one PBX call, and the payload says what was done."""
    stack, key = await _stack(gateway_stack, tmp_path, {READ, MODERATE})
    _join(stack.pbx, "4001", "4009", "4010", "4011")
    base = {"number": BRIDGE, "operator": "4001"}
    muted = await _act(stack, key, MUTE, **base, members=["4009", "4010"])
    assert muted == {
        "data": {
            "muteParticipants": {
                "number": BRIDGE,
                "action": "MUTE",
                "operator": "4001",
                "members": ["4009", "4010"],
                "all": False,
            }
        }
    }
    assert _in_room(stack.pbx) == {"4001": False, "4009": True, "4010": True, "4011": False}
    unmuted = await _act(stack, key, UNMUTE, **base, members=["4010"])
    assert unmuted["data"]["unmuteParticipants"]["action"] == "UNMUTE"
    assert _in_room(stack.pbx) == {"4001": False, "4009": True, "4010": False, "4011": False}
    removed = await _act(stack, key, REMOVE, **base, members=["4011"])
    assert removed["data"]["removeParticipants"]["members"] == ["4011"]
    assert _in_room(stack.pbx) == {"4001": False, "4009": True, "4010": False}
    assert _control_calls(stack) == {
        "conference/mute_member": 1,
        "conference/unmute_member": 1,
        "conference/kick_member": 1,
    }


async def test_moderation_all_acts_on_everyone_but_the_operator(
    gateway_stack: StackFactory, tmp_path: Path
) -> None:
    """`all: true` sends the PBX's `all`: everyone but the operator is muted, then removed."""
    stack, key = await _stack(gateway_stack, tmp_path, {MODERATE})
    _join(stack.pbx, "4001", "4009", "4010")
    result = await _act(stack, key, MUTE, number=BRIDGE, operator="4001", all=True)
    assert result["data"]["muteParticipants"] == {
        "number": BRIDGE,
        "action": "MUTE",
        "operator": "4001",
        "members": [],
        "all": True,
    }
    assert _in_room(stack.pbx) == {"4001": False, "4009": True, "4010": True}
    await _act(stack, key, REMOVE, number=BRIDGE, operator="4001", all=True)
    assert _in_room(stack.pbx) == {"4001": False}
    assert _control_calls(stack) == {"conference/mute_member": 1, "conference/kick_member": 1}


async def test_moderation_invite_calls_the_numbers_into_the_room(
    gateway_stack: StackFactory, tmp_path: Path
) -> None:
    """inviteParticipants is one add_member; the invitees pick up and join with ANSWER."""
    stack, key = await _stack(gateway_stack, tmp_path, {MODERATE})
    _join(stack.pbx, "4001")
    result = await _act(
        stack, key, INVITE, number=BRIDGE, operator="4001", members=["4020", "4021"],
        dialPermission="4001",
    )  # fmt: skip
    assert result["data"]["inviteParticipants"]["action"] == "INVITE"
    session = stack.pbx.live.session(BRIDGE)
    assert session is not None
    assert {m.number: m.memberstatus for m in session.members} == {
        "4001": "ANSWERED",
        "4020": "ANSWER",
        "4021": "ANSWER",
    }
    assert _control_calls(stack) == {"conference/add_member": 1}


async def test_moderation_without_moderate_scope_is_forbidden_without_a_pbx_call(
    gateway_stack: StackFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A key with read and write but not conferences:moderate gets FORBIDDEN for each
    control; the PBX sees none of them, and each refusal is audited as denied."""
    stack, key = await _stack(gateway_stack, tmp_path, {READ, WRITE})
    _join(stack.pbx, "4001", "4009")
    base = {"number": BRIDGE, "operator": "4001", "members": ["4009"]}
    with caplog.at_level(logging.INFO, logger="gateway.audit"):
        for document in (MUTE, UNMUTE, REMOVE, INVITE):
            result = await _act(stack, key, document, **base)
            assert result["data"] is None
            error = error_of(result)
            assert error["extensions"]["code"] == "FORBIDDEN"
            assert MODERATE in error["message"]
    assert _control_calls(stack) == {}
    assert _in_room(stack.pbx) == {"4001": False, "4009": False}
    assert [(f["action"], f["outcome"], f["client"]) for f in _audit(caplog)] == [
        ("conference.mute", "denied", "console"),
        ("conference.unmute", "denied", "console"),
        ("conference.remove", "denied", "console"),
        ("conference.invite", "denied", "console"),
    ]


@pytest.mark.parametrize(
    ("document", "fields", "violations"),
    [
        (
            MUTE,
            {"number": "64x3", "operator": "", "members": ["4009", "4009", "40 10"]},
            [
                ("number", "must be 1 to 15 digits"),
                ("operator", "must be 1 to 15 digits"),
                ("members", "members[2] is not"),
                ("members", "must not repeat a number (4009)"),
            ],
        ),
        (
            REMOVE,
            {"number": BRIDGE, "operator": "4001", "members": ["4009"], "all": True},
            [("members", "not both")],
        ),
        (UNMUTE, {"number": BRIDGE, "operator": "4001"}, [("members", "or all: true")]),
        (MUTE, {"number": BRIDGE, "operator": "4001", "members": []}, [("members", "got none")]),
        (
            INVITE,
            {
                "number": BRIDGE,
                "operator": "4001,4000",
                "members": [str(5000 + i) for i in range(51)],
                "dialPermission": "all",
            },
            [
                ("operator", "must be 1 to 15 digits"),
                ("members", "at most 50 numbers (got 51)"),
                ("dialPermission", "must be 1 to 15 digits"),
            ],
        ),
    ],
)
async def test_moderation_bad_input_lists_every_violation_without_a_pbx_call(
    gateway_stack: StackFactory,
    tmp_path: Path,
    document: str,
    fields: dict[str, Any],
    violations: list[tuple[str, str]],
) -> None:
    """Every broken rule comes in one BAD_USER_INPUT (a comma list or `all` never slips
    through as a number); the PBX is not called and nobody is touched."""
    stack, key = await _stack(gateway_stack, tmp_path, {MODERATE})
    _join(stack.pbx, "4001", "4009")
    error = error_of(await _act(stack, key, document, **fields))
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    given = [(v["field"], v["rule"]) for v in error["extensions"]["violations"]]
    assert len(given) == len(violations), given
    for (field, rule), (want_field, want_rule) in zip(given, violations, strict=True):
        assert field == want_field
        assert want_rule in rule
    assert _control_calls(stack) == {}
    assert _in_room(stack.pbx) == {"4001": False, "4009": False}


async def test_moderation_operator_not_a_moderator_maps_10006(
    gateway_stack: StackFactory, tmp_path: Path
) -> None:
    """An operator who is in the room but not a moderator: one call, PBX_ERROR 10006 with
    a message that says what to do; nobody is muted."""
    stack, key = await _stack(gateway_stack, tmp_path, {MODERATE})
    _join(stack.pbx, "4001", "4009", "4010")
    error = error_of(await _act(stack, key, MUTE, number=BRIDGE, operator="4009", members=["4010"]))
    assert error["extensions"] == {"code": "PBX_ERROR", "errno": "10006"}
    assert "4009 is not a moderator in room 6403" in error["message"]
    assert "join the room as a moderator" in error["message"]
    assert _control_calls(stack) == {"conference/mute_member": 1}
    assert _in_room(stack.pbx) == {"4001": False, "4009": False, "4010": False}


async def test_moderation_room_not_in_session_maps_10110(
    gateway_stack: StackFactory, tmp_path: Path
) -> None:
    """A room nobody is in: one call, PBX_ERROR 10110 saying the room is not in session."""
    stack, key = await _stack(gateway_stack, tmp_path, {MODERATE})
    error = error_of(await _act(stack, key, REMOVE, number="6401", operator="4001", all=True))
    assert error["extensions"] == {"code": "PBX_ERROR", "errno": "10110"}
    assert "room 6401 is not in session" in error["message"]
    assert _control_calls(stack) == {"conference/kick_member": 1}


async def test_moderation_firmware_without_controls_is_feature_unavailable(
    gateway_stack: StackFactory, tmp_path: Path
) -> None:
    """Profile no-live (every control answers 10003): FEATURE_UNAVAILABLE pointing at
    doctor; remove costs its one call, mute one call under each of the two names."""
    stack, key = await _stack(gateway_stack, tmp_path, {MODERATE}, profile="no-live")
    _join(stack.pbx, "4001", "4009")
    base = {"number": BRIDGE, "operator": "4001", "members": ["4009"]}
    for document in (REMOVE, MUTE):
        error = error_of(await _act(stack, key, document, **base))
        assert error["extensions"] == {"code": "FEATURE_UNAVAILABLE", "errno": "10003"}
        assert "pbx-gateway doctor" in error["message"]
    assert _control_calls(stack) == {
        "conference/kick_member": 1,
        "conference/mute_member": 1,
        "conference/mute": 1,
    }
    assert _in_room(stack.pbx) == {"4001": False, "4009": False}


async def test_moderation_k2_names_are_tried_once_then_remembered(
    gateway_stack: StackFactory, tmp_path: Path
) -> None:
    """Profile k2-controls: the first mute finds conference/mute after one 10003 from
    mute_member; later mutes go straight to the K2 name."""
    stack, key = await _stack(gateway_stack, tmp_path, {MODERATE}, profile="k2-controls")
    _join(stack.pbx, "4001", "4009", "4010")
    base = {"number": BRIDGE, "operator": "4001"}
    assert "errors" not in await _act(stack, key, MUTE, **base, members=["4009"])
    assert "errors" not in await _act(stack, key, MUTE, **base, members=["4010"])
    assert _in_room(stack.pbx) == {"4001": False, "4009": True, "4010": True}
    assert _control_calls(stack) == {"conference/mute_member": 1, "conference/mute": 2}


async def test_moderation_token_error_costs_one_login_and_one_resend(
    gateway_stack: StackFactory, tmp_path: Path
) -> None:
    """A timed-out token: the PBX refused to authenticate the first send (it did nothing),
    so the gateway logs in once and sends it once more; the member is muted once."""
    stack, key = await _stack(gateway_stack, tmp_path, {MODERATE})
    _join(stack.pbx, "4001", "4009")
    logins = stack.pbx.stats.logins_succeeded
    stack.pbx.expire_tokens()
    result = await _act(stack, key, MUTE, number=BRIDGE, operator="4001", members=["4009"])
    assert "errors" not in result, result
    assert stack.pbx.stats.logins_succeeded == logins + 1
    assert stack.pbx.stats.live["mute"] == 1
    assert _control_calls(stack) == {"conference/mute_member": 2}


async def test_moderation_lost_connection_is_not_resent_and_audited_unknown(
    gateway_stack: StackFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection lost mid-answer: PBX_UNAVAILABLE, one call only (the PBX may have
    acted), and the audit line says the outcome is unknown."""
    stack, key = await _stack(gateway_stack, tmp_path, {MODERATE})
    _join(stack.pbx, "4001", "4009")
    stack.pbx.drop_next(1, "conference/kick_member")
    with caplog.at_level(logging.INFO, logger="gateway.audit"):
        result = await _act(stack, key, REMOVE, number=BRIDGE, operator="4001", members=["4009"])
    assert error_of(result)["extensions"]["code"] == "PBX_UNAVAILABLE"
    assert _control_calls(stack) == {"conference/kick_member": 1}
    assert [f["outcome"] for f in _audit(caplog)] == ["unknown"]


async def test_moderation_audit_line_names_client_room_action_operator_members(
    gateway_stack: StackFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One gateway.audit line per attempt: who, which room, which action, the operator and
    members, and how it ended (applied, invalid, refused), never the room's PINs."""
    stack, key = await _stack(gateway_stack, tmp_path, {MODERATE})
    pins = {"participantepassword": "918273645", "moderatorpassword": "5647382910"}
    rooms = [dict(room) for room in stack.pbx.book.all()]
    stack.pbx.set_conferences([{**r, **pins} if r["number"] == BRIDGE else r for r in rooms])
    _join(stack.pbx, "4001", "4009")
    with caplog.at_level(logging.INFO, logger="gateway.audit"):
        await _act(stack, key, MUTE, number=BRIDGE, operator="4001", members=["4009"])
        await _act(stack, key, REMOVE, number=BRIDGE, operator="4001", members=["x"])
        await _act(stack, key, UNMUTE, number=BRIDGE, operator="4009", all=True)
    entries = _audit(caplog)
    assert [
        (e["action"], e["number"], e["operator"], e["members"], e["outcome"], e.get("errno"))
        for e in entries
    ] == [
        ("conference.mute", BRIDGE, "4001", ["4009"], "applied", None),
        ("conference.remove", BRIDGE, "4001", ["'x'"], "invalid", None),
        ("conference.unmute", BRIDGE, "4009", ["all"], "refused", "10006"),
    ]
    assert all(e["client"] == "console" and e["client_kind"] == "api-key" for e in entries)
    assert all(e["request_id"] for e in entries)
    text = "\n".join(r.getMessage() + repr(r.__dict__.get("fields")) for r in caplog.records)
    assert not any(pin in text for pin in pins.values())


async def test_moderation_blank_parameter_maps_10004_as_a_gateway_bug(
    gateway_stack: StackFactory, tmp_path: Path
) -> None:
    """A 10004 from the PBX (a parameter it found blank) after the gateway's own checks is
    reported as a gateway bug to report, once, with nobody removed."""
    stack, key = await _stack(gateway_stack, tmp_path, {MODERATE})
    _join(stack.pbx, "4001", "4009")
    stack.pbx.fail_next(1, "10004", "conference/kick_member")
    error = error_of(await _act(stack, key, REMOVE, number=BRIDGE, operator="4001", all=True))
    assert error["extensions"] == {"code": "PBX_ERROR", "errno": "10004"}
    assert "report it as a gateway bug" in error["message"]
    assert _control_calls(stack) == {"conference/kick_member": 1}
    assert _in_room(stack.pbx) == {"4001": False, "4009": False}


async def test_moderation_removal_is_seen_by_the_next_session_read_at_once(
    gateway_stack: StackFactory, tmp_path: Path
) -> None:
    """A removal drops the gateway's cached list of who is in session: a read right after it
    (within GATEWAY_SESSION_TTL) asks the PBX again and no longer shows the removed member."""
    stack, key = await _stack(gateway_stack, tmp_path, {READ, MODERATE})
    _join(stack.pbx, "4001", "4009")
    read = f'{{ conference(number: "{BRIDGE}") {{ session {{ participants {{ number }} }} }} }}'

    async def present() -> list[str]:
        answer = await stack.graphql(read, headers={"X-API-Key": key})
        session = answer["data"]["conference"]["session"]
        return sorted(p["number"] for p in session["participants"])

    assert await present() == ["4001", "4009"]
    assert await present() == ["4001", "4009"]  # within the TTL: cached
    assert stack.calls("conference/query_in_session") == 1
    await _act(stack, key, REMOVE, number=BRIDGE, operator="4001", members=["4009"])
    assert await present() == ["4001"]
    assert stack.calls("conference/query_in_session") == 2
