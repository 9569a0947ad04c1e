"""The admin routes of live conferences, under ``/__simulator/live``.

Each is a thin wrapper over one ``SimulatorState.live_*`` method (the same calls in Python):
``GET live`` (rooms in session, with what the wire does not carry: mute, moderator, seconds in
the room), ``GET live/events`` (the last events made), ``POST live/join``, ``live/leave``,
``live/mute``, ``live/invite``, ``live/answer``, ``live/decline``, ``live/clear`` and
``live/report/drop`` (close every TCP report connection; ``refuse_seconds``: and close new
ones on arrival for that long). Events on or off, the report method
and the other live switches go through ``POST /__simulator/config``. A rule the PBX would
refuse (a member not in the room, a number twice) answers 400 with the reason.

``join``, ``leave`` and ``answer`` (the changes that add or remove a participant) answer with
``changed_at`` too: ``time.monotonic()`` (Linux's ``CLOCK_MONOTONIC``, one clock for every
process on the machine) just after the change, by which time its ``ConferenceStatus`` has
been handed to every TCP report connection. A benchmark on the same machine times the
delivery of a change from there (``bench.fanout_load``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gateway.simulator.admin_args import Body, arg
from gateway.simulator.state import SimulatorState

Action = Callable[[SimulatorState, Body], dict[str, Any]]


def _room(body: Body) -> str:
    return str(arg(body, "number", (str, int)))


def _member(body: Body) -> str:
    return str(arg(body, "member", (str, int)))


def _join(state: SimulatorState, body: Body) -> dict[str, Any]:
    return state.live_join(
        _room(body),
        _member(body),
        kind=arg(body, "kind", str, "ext"),
        moderator=arg(body, "moderator", bool, None),
        trunk=arg(body, "trunk", str, ""),
        to=arg(body, "to", str, ""),
    )


def _stamped(action: Action) -> Action:
    """``action``, its answer carrying ``changed_at`` (see the module docstring)."""

    def stamped(state: SimulatorState, body: Body) -> dict[str, Any]:
        result = action(state, body)
        return {**result, "changed_at": time.monotonic()}

    return stamped


def _invite(state: SimulatorState, body: Body) -> dict[str, Any]:
    state.live_invite(_room(body), _member(body), arg(body, "dialpermission", str, ""))
    return {}


def _decline(state: SimulatorState, body: Body) -> dict[str, Any]:
    state.live_decline(_room(body), _member(body))
    return {}


def _clear(state: SimulatorState, body: Body) -> dict[str, Any]:
    number = arg(body, "number", (str, int), None)
    return {"left": state.live_clear(None if number is None else str(number))}


LIVE_ROUTES: list[tuple[str, str, Action]] = [
    ("/live", "GET", lambda state, body: state.live_json()),
    ("/live/events", "GET", lambda state, body: {"events": state.live_events()}),
    ("/live/join", "POST", _stamped(_join)),
    ("/live/leave", "POST", _stamped(lambda s, b: s.live_leave(_room(b), _member(b)))),
    (
        "/live/mute",
        "POST",
        lambda s, b: s.live_mute(_room(b), _member(b), arg(b, "muted", bool, True)),
    ),
    ("/live/invite", "POST", _invite),
    ("/live/answer", "POST", _stamped(lambda s, b: s.live_answer(_room(b), _member(b)))),
    ("/live/decline", "POST", _decline),
    ("/live/clear", "POST", _clear),
    (
        "/live/report/drop",
        "POST",
        lambda s, b: {
            "dropped": s.drop_report_channel(float(arg(b, "refuse_seconds", (int, float), 0.0)))
        },
    ),
]
