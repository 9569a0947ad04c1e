"""What each API endpoint does once a call has passed the common checks in ``api.py``.

Each handler gets the state, the parsed JSON body and the request, and returns the PBX's answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.conference_codec import ALL
from gateway.simulator.conference_book import (
    ConferenceFieldError,
    UnknownConferenceError,
    split_numbers,
)
from gateway.simulator.conference_rules import wire_view
from gateway.simulator.config import password_digest
from gateway.simulator.envelope import (
    IP_LOCKED,
    PARAMETER_BLANK,
    PORT_ERROR,
    failed,
    pbx_answer,
    success,
)
from gateway.simulator.live_endpoints import LIVE_ENDPOINTS
from gateway.simulator.report_push import PushTargetError, push_target
from gateway.simulator.state import SimulatorState

Body = dict[str, Any]
Handler = Callable[[SimulatorState, Body, Request], Awaitable[Response]]


async def login(state: SimulatorState, body: Body, request: Request) -> Response:
    """``login``: lockout first (even the right password gets 20002), then the credentials."""
    address = request.client.host if request.client else "unknown"
    config, now = state.config, state.now()
    if state.lockout.is_locked(address, now):
        state.stats.logins_locked += 1
        return failed(IP_LOCKED)
    # Chosen answer: a blank or non-string field is a bad login and counts toward the lockout,
    # the cautious reading for a gateway that must never cause one.
    good = body.get("username") == config.username and body.get("password") == password_digest(
        config.password
    )
    if not good:
        state.stats.logins_failed += 1
        state.lockout.record_failure(address, now, config.lockout_threshold, config.lockout_seconds)
        # 20003 by the S-Series docs; a profile may answer otherwise (K2 v1's example: 30003).
        return failed(config.login_failure_errno)
    target = None
    if config.transport == "HTTP":
        # HTTP push goes to this caller's address, on the port/url it gives (api-reports.html).
        try:
            target = push_target(address, body)
        except PushTargetError:
            return failed(PORT_ERROR)  # chosen: checked after the credentials, not a failure
    state.lockout.record_success(address)
    if config.new_login_kills_old_tokens:
        state.tokens.end_user(config.username)
    state.stats.logins_succeeded += 1
    token = state.tokens.issue(config.username, now)
    if target is not None:
        state.reports.push_targets[token] = target
    return success(token=token, transport=config.transport)


async def heartbeat(state: SimulatorState, body: Body, request: Request) -> Response:
    """``heartbeat``: the token check already restarted the token's idle clock.

    With ``heartbeat_requires_ipaddr`` (the S-Series v2 page marks it required) a heartbeat
    without a non-blank ``ipaddr`` is refused as a blank parameter; the token still lives.
    """
    ipaddr = body.get("ipaddr")
    if state.config.heartbeat_requires_ipaddr and not (isinstance(ipaddr, str) and ipaddr.strip()):
        state.stats.heartbeats_refused += 1
        return failed(PARAMETER_BLANK)
    state.stats.heartbeats += 1
    return success()


async def logout(state: SimulatorState, body: Body, request: Request) -> Response:
    """``logout``: the token is gone; using it again answers 20004."""
    state.tokens.end(request.query_params.get("token", ""))
    state.stats.logouts += 1
    return success()


def _number_field(body: Body) -> str | None:
    number = body.get("number")
    if isinstance(number, int) and not isinstance(number, bool):
        number = str(number)  # all values are strings on the wire; tolerate a bare number
    if not isinstance(number, str) or not number.strip():
        return None
    return number


async def query_conferences(state: SimulatorState, body: Body, request: Request) -> Response:
    """``conference/query``: one number, a comma list, or ``all``."""
    raw = _number_field(body)
    if raw is None:
        return failed(PARAMETER_BLANK)
    state.stats.query_numbers.append(raw)
    config = state.config
    if raw.strip().lower() == ALL:
        rooms = state.book.all()
    else:
        numbers = split_numbers(raw)
        if not numbers:
            return failed(PARAMETER_BLANK)
        rooms, unknown = state.book.lookup(numbers)
        # The real PBX's answer to unknown numbers is not documented: each mode plays one guess.
        if unknown and config.unknown_numbers == "failed":
            return failed(config.unknown_errno)
        if unknown and config.unknown_numbers == "missing":
            return pbx_answer({"status": "Success"})
        if unknown and config.unknown_numbers == "empty":
            rooms = []
    left_out = config.fields_left_out()
    return success(conferences=[wire_view(room, left_out=left_out) for room in rooms])


async def update_conference(state: SimulatorState, body: Body, request: Request) -> Response:
    """``conference/update``: validate every given field, then apply them all or none."""
    number = _number_field(body)
    if number is None:
        return failed(PARAMETER_BLANK)
    try:
        state.book.update({**body, "number": number.strip()})
    except UnknownConferenceError:
        return failed(state.config.unknown_errno)
    except ConferenceFieldError as exc:
        # Chosen answer: the failure names the field in ``errordata`` (a key seen on failures).
        return failed(state.config.invalid_errno, errordata=exc.field)
    return success()


ENDPOINTS: dict[str, Handler] = {
    "login": login,
    "heartbeat": heartbeat,
    "logout": logout,
    "conference/query": query_conferences,
    "conference/update": update_conference,
    # Live conferences; a firmware without one answers 10003 (api.py asks live_endpoints).
    **LIVE_ENDPOINTS,
}
# Endpoints whose body may be empty: logout takes none, heartbeat's fields are all optional.
BODY_OPTIONAL = frozenset({"heartbeat", "logout"})
NO_TOKEN = frozenset({"login"})
