"""The admin routes under ``/__simulator``: the bad-day switches and the counters, over HTTP.

Each route is a thin wrapper over one ``SimulatorState`` method. Admin calls answer plain JSON
(the method's result, ``{"ok": true}`` when it has none, or ``{"error": "..."}`` with a 4xx
status), are never counted in the stats and never meet a fault, so a test can always reach them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.simulator.admin_args import Body
from gateway.simulator.admin_args import arg as _arg
from gateway.simulator.admin_live import LIVE_ROUTES
from gateway.simulator.conference_data import generate_conferences
from gateway.simulator.config import ADMIN_PREFIX
from gateway.simulator.routing import any_method_route
from gateway.simulator.state import DownNeedsServerError, SimulatorState

Action = Callable[[SimulatorState, Body], dict[str, Any]]


class _NoSuchRoute(Exception):
    """An admin path that does not exist (404)."""


def _route(path: str, actions: dict[str, Action]) -> Route:
    """One route per path; the action is picked by method (GET and POST share /config)."""

    async def endpoint(request: Request) -> Response:
        action = actions.get(request.method, actions.get("*"))
        if action is None:
            return JSONResponse({"error": f"use {' or '.join(actions)}"}, status_code=405)
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            result = action(request.app.state.simulator, body)
        except _NoSuchRoute:
            return JSONResponse({"error": f"no admin route {request.url.path}"}, status_code=404)
        except DownNeedsServerError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(result or {"ok": True})

    return any_method_route(ADMIN_PREFIX + path, endpoint)


def _done(call: Callable[[SimulatorState, Body], object]) -> Action:
    def action(state: SimulatorState, body: Body) -> dict[str, Any]:
        call(state, body)
        return {}

    return action


def _count(body: Body) -> int:
    count: int = _arg(body, "count", int, 1)
    return count


def _endpoint(body: Body) -> str | None:
    endpoint: str | None = _arg(body, "endpoint", str, None)
    return endpoint


def _set_conferences(state: SimulatorState, body: Body) -> dict[str, Any]:
    if "generate" in body:
        rooms = generate_conferences(_arg(body, "generate", int))
    else:
        rooms = _arg(body, "conferences", list)
    return {"count": state.set_conferences(rooms)}


def _not_found(state: SimulatorState, body: Body) -> dict[str, Any]:
    raise _NoSuchRoute


_ROUTES: list[tuple[str, str, Action]] = [
    ("/stats", "GET", lambda state, body: state.stats_json()),
    ("/reset", "POST", _done(lambda state, body: state.reset_stats())),
    ("/config", "GET", lambda state, body: state.config.tunables()),
    ("/config", "POST", lambda state, body: state.configure(**body).tunables()),
    (
        "/credentials",
        "POST",
        _done(
            lambda state, body: state.set_credentials(
                _arg(body, "username", str),
                _arg(body, "password", str),
                end_tokens=_arg(body, "end_tokens", bool, True),
            )
        ),
    ),
    ("/tokens/expire", "POST", lambda state, body: {"expired": state.expire_tokens()}),
    ("/lockout/clear", "POST", _done(lambda state, body: state.unlock_all())),
    ("/conferences", "PUT", _set_conferences),
    ("/time/advance", "POST", _done(lambda s, b: s.advance_time(_arg(b, "seconds", (int, float))))),
    ("/faults", "GET", lambda state, body: {"armed": state.faults.armed()}),
    ("/faults/clear", "POST", _done(lambda state, body: state.clear_faults())),
    (
        "/faults/fail",
        "POST",
        _done(lambda s, b: s.fail_next(_count(b), str(_arg(b, "errno", (str, int))), _endpoint(b))),
    ),
    (
        "/faults/garbage",
        "POST",
        _done(lambda s, b: s.garbage_next(_count(b), _arg(b, "kind", str, "html"), _endpoint(b))),
    ),
    ("/faults/drop", "POST", _done(lambda s, b: s.drop_next(_count(b), _endpoint(b)))),
    (
        "/faults/stall",
        "POST",
        _done(
            lambda s, b: s.stall_next(
                _count(b), float(_arg(b, "seconds", (int, float), 3600.0)), _endpoint(b)
            )
        ),
    ),
    (
        "/faults/drip",
        "POST",
        _done(
            lambda s, b: s.drip_next(
                _count(b), float(_arg(b, "interval", (int, float), 0.5)), _endpoint(b)
            )
        ),
    ),
    # Required seconds: once down, no admin call can reach the simulator to bring it back.
    (
        "/faults/down",
        "POST",
        _done(lambda s, b: s.go_down(float(_arg(b, "seconds", (int, float))))),
    ),
]


def admin_routes() -> list[Route]:
    """The admin routes, then a catch-all that keeps unknown admin paths out of the API."""
    by_path: dict[str, dict[str, Action]] = {}
    for path, method, action in [*_ROUTES, *LIVE_ROUTES]:
        by_path.setdefault(path, {})[method] = action
    routes = [_route(path, actions) for path, actions in by_path.items()]
    routes.append(_route("/{rest:path}", {"*": _not_found}))
    return routes
