"""The API side of the simulator: every request that is not an admin call lands here.

Order of checks (the real order is undocumented; this one is chosen so each errno is reachable,
and so that faults hit every call, even malformed ones, as a broken PBX would):

1. Count the call under its endpoint (``"unknown"`` for any other path) and as in flight; read
   its body (a client gone by then gets nothing).
2. ``serial`` mode: wait for the one-at-a-time lock.
3. Latency plus jitter.
4. An armed stall.
5. An armed answer fault (drop, garbage, fail) replaces the answer; an armed drip sends the
   answer, whichever it is, one byte at a time (the call stays in flight until it is sent).
6. Method: anything but POST answers 20001.
7. Path: anything but ``/api/v2.0.0/<known endpoint>`` answers 10003, and so does a live
   endpoint the configured firmware lacks (``live_endpoints.available``).
8. Body: logout ignores it; an empty body answers 20007 (heartbeat takes it as ``{}``); a body
   that is not a JSON object answers 20000.
9. Token (all but login): blank or absent 20005, unknown 20004, timed out ``expired_errno``.
10. The endpoint itself (``endpoints.py``): e.g. a blank ``number`` answers 10004.

Any path, method or body gets the PBX envelope with HTTP 200; an unexpected exception answers
20010 (see ``app.py``).
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from gateway.simulator.config import API_PREFIX
from gateway.simulator.endpoints import BODY_OPTIONAL, ENDPOINTS, NO_TOKEN
from gateway.simulator.envelope import (
    DATA_BLANK,
    NO_SUCH_TOKEN,
    ONLY_JSON,
    ONLY_POST,
    TOKEN_BLANK,
    UNSUPPORTED_REQUEST,
    failed,
)
from gateway.simulator.live_endpoints import LIVE_ENDPOINTS, available
from gateway.simulator.misbehave import DrippingResponse, DroppedResponse, fault_answer
from gateway.simulator.state import SimulatorState
from gateway.simulator.tokens import TokenCheck


def endpoint_of(path: str) -> str | None:
    """The endpoint a path names (``"conference/query"``), or None if it names none."""
    prefix = API_PREFIX + "/"
    if not path.startswith(prefix):
        return None
    name = path[len(prefix) :]
    return name if name in ENDPOINTS else None


async def handle_api_call(request: Request) -> Response:
    """Steps 1 to 5 of the module docstring, then ``answer``."""
    state: SimulatorState = request.app.state.simulator
    endpoint = endpoint_of(request.url.path)
    state.stats.calls[endpoint or "unknown"] += 1
    state.stats.enter()
    dripping = False
    try:
        # Read now: a stalled call must not find its client gone when it wakes up.
        await request.body()
        async with AsyncExitStack() as stack:
            if state.config.serial:
                await stack.enter_async_context(state.serial_lock())
            await state.delay()
            stall = state.faults.take_stall(endpoint)
            if stall is not None:
                await state.stall(stall.seconds)
            drip = state.faults.take_drip(endpoint)
            fault = state.faults.take_answer(endpoint)
            response = (
                fault_answer(fault) if fault is not None else await answer(state, request, endpoint)
            )
            if drip is None or isinstance(response, DroppedResponse):
                return response  # a dropped connection has no answer to drip
            generation = state.faults.generation
            dripping = True  # the response leaves the in-flight count once it is all sent
            return DrippingResponse(
                response,
                drip.interval,
                hurry=lambda: state.shutting_down or state.faults.generation != generation,
                done=state.stats.leave,
            )
    except ClientDisconnect:
        return Response(status_code=499)  # nobody is listening; keep the server log quiet
    finally:
        if not dripping:
            state.stats.leave()


async def _read_body(request: Request, endpoint: str) -> dict[str, Any] | Response:
    if endpoint == "logout":
        return {}
    raw = await request.body()
    if not raw.strip():
        return {} if endpoint in BODY_OPTIONAL else failed(DATA_BLANK)
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return failed(ONLY_JSON)
    return body if isinstance(body, dict) else failed(ONLY_JSON)


def _check_token(state: SimulatorState, token: str) -> Response | None:
    outcome = state.tokens.check(token, state.now(), state.config.token_ttl)
    if outcome is TokenCheck.OK:
        return None
    if outcome is TokenCheck.BLANK:
        return failed(TOKEN_BLANK)
    if outcome is TokenCheck.UNKNOWN:
        return failed(NO_SUCH_TOKEN)
    return failed(state.config.expired_errno)


async def answer(state: SimulatorState, request: Request, endpoint: str | None) -> Response:
    """Steps 6 to 10 of the module docstring."""
    if request.method != "POST":
        return failed(ONLY_POST)
    if endpoint is None or (endpoint in LIVE_ENDPOINTS and endpoint not in available(state.config)):
        return failed(UNSUPPORTED_REQUEST)  # a live endpoint this firmware lacks: as unknown
    body = await _read_body(request, endpoint)
    if isinstance(body, Response):
        return body
    if endpoint not in NO_TOKEN:
        refusal = _check_token(state, request.query_params.get("token", ""))
        if refusal is not None:
            return refusal
    return await ENDPOINTS[endpoint](state, body, request)
