"""The live-conference endpoints: ``conference/query_in_session`` and the member controls.

Which of them a firmware has is config (``live_query``, ``member_controls``); one it lacks
answers 10003 like any unknown endpoint (``LIVE_ENDPOINTS`` lists every name, ``available``
says which exist). Rules, in the order they are checked (each answer listed in the README):

1. a blank ``number``, ``operator`` or member list answers 10004 and does nothing (doctor
   probes each endpoint with ``{"number": ""}``);
2. a room that does not exist or is not in session answers ``live_unknown_errno`` (10110);
3. the ``operator`` must be an extension in the room and one of its moderators, and every
   named member must be in the room (``all``: everyone but the operator), else
   ``control_refused_errno`` (chosen, 10006), and nothing is done;
4. the action is applied to every named member; each kick is one leave, so one event each.

Member lists use ``membernumber`` (the Cloud v2 mute page's name); ``add_member`` takes
``invitemember`` and ``dialpermission`` (the Cloud v2 page; dialpermission defaults to the
operator, chosen).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response

from gateway.conference_codec import ALL
from gateway.simulator.conference_book import split_numbers
from gateway.simulator.config import SimulatorConfig
from gateway.simulator.envelope import PARAMETER_BLANK, failed, success
from gateway.simulator.live_session import (
    Invite,
    LiveRuleError,
    Member,
    Session,
    check_member_number,
    invitee_kind,
)
from gateway.simulator.state import SimulatorState

Body = dict[str, Any]
Handler = Callable[[SimulatorState, Body, Request], Awaitable[Response]]
Action = Literal["kick", "mute", "unmute"]

QUERY_IN_SESSION = "conference/query_in_session"
S_SERIES_CONTROLS = (
    "conference/kick_member",
    "conference/mute_member",
    "conference/unmute_member",
    "conference/add_member",
)
K2_CONTROLS = (
    "conference/kick_member",
    "conference/mute",
    "conference/unmute",
    "conference/add_member",
)
# Documented on the S-Series v2 query_in_session page: the list's key is ``conference``.
IN_SESSION_LIST_KEY = "conference"


def available(config: SimulatorConfig) -> frozenset[str]:
    """The live endpoints this firmware has."""
    names: set[str] = {QUERY_IN_SESSION} if config.live_query else set()
    if config.member_controls == "s-series":
        names.update(S_SERIES_CONTROLS)
    elif config.member_controls == "k2":
        names.update(K2_CONTROLS)
    return frozenset(names)


def endpoint_presence(config: SimulatorConfig) -> dict[str, bool]:
    """Each live endpoint name (both namings) and whether this firmware has it (for doctor)."""
    have = available(config)
    return {name: name in have for name in LIVE_ENDPOINT_NAMES}


def _text(body: Body, name: str) -> str:
    value = body.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # documented as "Integer", sent as strings: accept both
    return value.strip() if isinstance(value, str) else ""


async def query_in_session(state: SimulatorState, body: Body, request: Request) -> Response:
    """``conference/query_in_session``: one number, a comma list or ``all``."""
    raw = _text(body, "number")
    if not raw:
        return failed(PARAMETER_BLANK)
    state.stats.in_session_numbers.append(raw)
    if raw.lower() == ALL:
        sessions = state.live.sessions()
    else:
        numbers = split_numbers(raw)
        if not numbers:
            return failed(PARAMETER_BLANK)
        found = [state.live.session(n) for n in numbers if state.book.get(n) is not None]
        sessions = [s for s in found if s is not None]
        if len(sessions) < len(numbers) and state.config.idle_rooms == "failed":
            return failed(state.config.live_unknown_errno)
    entries = [_wire_session(session) for session in sessions]
    return success(**{IN_SESSION_LIST_KEY: entries})


def _wire_session(session: Session) -> dict[str, Any]:
    return {
        "callid": session.callid,
        "conferencenumber": session.number,
        "conferencename": session.name,
        "members": [member.wire() for member in session.members],
    }


def _checked(
    state: SimulatorState, body: Body, list_field: str
) -> tuple[Session, Member, list[str]] | Response:
    """Rules 1 to 3 of the module docstring: the session, the operator and the named numbers."""
    number, operator, names = (
        _text(body, "number"),
        _text(body, "operator"),
        _text(body, list_field),
    )
    counts = state.stats.live
    if not (number and operator and names):
        counts["controls_refused"] += 1
        return failed(PARAMETER_BLANK)
    session = state.live.session(number) if state.book.get(number) is not None else None
    if session is None:
        counts["controls_refused"] += 1
        return failed(state.config.live_unknown_errno)
    acting = session.find(operator)
    if acting is None or acting.kind != "ext" or not acting.moderator or acting.holding:
        counts["controls_refused"] += 1
        return failed(state.config.control_refused_errno)
    if names.lower() == "all":
        return session, acting, ["all"]
    numbers = split_numbers(names)
    if not numbers:
        counts["controls_refused"] += 1
        return failed(PARAMETER_BLANK)
    return session, acting, numbers


def _member_action(action: Action) -> Handler:
    async def handler(state: SimulatorState, body: Body, request: Request) -> Response:
        checked = _checked(state, body, "membernumber")
        if isinstance(checked, Response):
            return checked
        session, operator, numbers = checked
        if numbers == ["all"]:
            targets = [m for m in session.members if m is not operator]
        else:
            found = [session.find(n) for n in numbers]
            if any(member is None for member in found):
                state.stats.live["controls_refused"] += 1
                return failed(state.config.control_refused_errno)
            targets = [m for m in found if m is not None]
        room = state.book.get(session.number)
        if room is None:  # the rooms were replaced since _checked: as unknown
            return failed(state.config.live_unknown_errno)
        for member in targets:
            if action == "kick":
                state.live.leave(room, member.channelid)
            else:
                member.muted = action == "mute"
        state.stats.live[action] += len(targets)
        return success()

    handler.__doc__ = f"``{action}`` the named members (``all``: everyone but the operator)."
    return handler


async def add_member(state: SimulatorState, body: Body, request: Request) -> Response:
    """``conference/add_member``: call each ``invitemember``; they join with ANSWER on pick-up."""
    checked = _checked(state, body, "invitemember")
    if isinstance(checked, Response):
        return checked
    session, operator, numbers = checked
    counts = state.stats.live
    dialpermission = _text(body, "dialpermission") or operator.number
    if numbers == ["all"] or any(
        session.find(n) is not None or any(i.number == n for i in session.ringing) for n in numbers
    ):
        counts["controls_refused"] += 1
        return failed(state.config.control_refused_errno)
    try:
        invites = [
            Invite(invitee_kind(n), check_member_number(invitee_kind(n), n), dialpermission)
            for n in numbers
        ]
    except LiveRuleError:
        counts["controls_refused"] += 1
        return failed(state.config.control_refused_errno)
    for invite in invites:
        state.live.ring(session.number, invite)
    counts["invite"] += len(numbers)
    if state.config.invitees_answer:
        for number in numbers:
            state.live_answer(session.number, number)
    return success()


LIVE_ENDPOINTS: dict[str, Handler] = {
    QUERY_IN_SESSION: query_in_session,
    "conference/kick_member": _member_action("kick"),
    "conference/mute_member": _member_action("mute"),
    "conference/unmute_member": _member_action("unmute"),
    "conference/mute": _member_action("mute"),
    "conference/unmute": _member_action("unmute"),
    "conference/add_member": add_member,
}
LIVE_ENDPOINT_NAMES: tuple[str, ...] = tuple(LIVE_ENDPOINTS)
