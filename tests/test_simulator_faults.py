"""The simulator's in-process bad days: fail-next, garbage, latency, serial, config, stats."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from gateway.simulator import SimulatorState
from tests.timing import eventually

LOGIN = "/api/v2.0.0/login"
QUERY = "/api/v2.0.0/conference/query"


async def _query(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(QUERY, params={"token": token}, json={"number": "6400"})


async def test_fail_next_fails_exactly_n_calls(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """``faults/fail`` with count 2 fails two calls with the errno, then calls succeed."""
    body = {"count": 2, "errno": "30003"}
    assert (await sim_client.post("/__simulator/faults/fail", json=body)).json() == {"ok": True}
    answers = [(await _query(sim_client, sim_token)).json() for _ in range(3)]
    assert answers[:2] == [{"status": "Failed", "errno": "30003"}] * 2
    assert answers[2]["status"] == "Success"
    assert sim_state.stats_json()["calls"] == {"login": 1, "conference/query": 3}


async def test_fail_next_endpoint_filter_spares_other_endpoints(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """A fault for conference/query leaves heartbeat alone and still waits for a query."""
    sim_state.fail_next(1, "20010", endpoint="conference/query")
    heartbeat = await sim_client.post("/api/v2.0.0/heartbeat", params={"token": sim_token})
    assert heartbeat.json()["status"] == "Success"
    assert (await _query(sim_client, sim_token)).json()["errno"] == "20010"


async def test_fail_permanent_until_cleared(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """Count -1 fails every call until ``faults/clear``."""
    sim_state.fail_next(-1, "30001")
    errnos = [(await _query(sim_client, sim_token)).json()["errno"] for _ in range(5)]
    assert errnos == ["30001"] * 5
    assert (await sim_client.post("/__simulator/faults/clear")).json() == {"ok": True}
    assert (await _query(sim_client, sim_token)).json()["status"] == "Success"


@pytest.mark.parametrize(
    ("kind", "status", "content_type"),
    [
        ("html", 200, "text/html"),
        ("truncated", 200, "application/json"),
        ("empty", 200, "application/json"),
        ("500", 500, "text/html"),
    ],
)
async def test_garbage_kinds_are_undecodable(
    sim_client: httpx.AsyncClient,
    sim_state: SimulatorState,
    sim_token: str,
    kind: str,
    status: int,
    content_type: str,
) -> None:
    """Each garbage kind answers a body no JSON decoder accepts, once."""
    answer = await sim_client.post("/__simulator/faults/garbage", json={"kind": kind})
    assert answer.status_code == 200
    response = await _query(sim_client, sim_token)
    media_type = response.headers["content-type"].split(";")[0]
    assert (status, content_type) == (response.status_code, media_type)
    with pytest.raises(ValueError):
        response.json()
    assert (await _query(sim_client, sim_token)).json()["status"] == "Success"


async def test_garbage_permanent_until_cleared(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """Garbage with count -1 lasts until cleared."""
    sim_state.garbage_next(-1, "html")
    types = [(await _query(sim_client, sim_token)).headers["content-type"] for _ in range(3)]
    assert types == ["text/html; charset=utf-8"] * 3
    sim_state.clear_faults()
    assert (await _query(sim_client, sim_token)).json()["status"] == "Success"


async def test_drop_in_process_raises_connection_reset(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """In-process a drop reaches the client as ConnectionResetError (loopback: see server tests)."""
    sim_state.drop_next(1)
    with pytest.raises(ConnectionResetError):
        await _query(sim_client, sim_token)


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("fail", {"count": 0, "errno": "1"}),
        ("fail", {"count": 1}),
        ("fail", {"count": 1, "errno": "abc"}),
        ("garbage", {"kind": "xml"}),
        ("stall", {"seconds": -1}),
        ("drip", {"interval": 0}),
        ("drip", {"interval": "fast"}),
        ("drop", {"count": "2"}),
        ("drop", {"count": True}),
    ],
)
async def test_fault_routes_refuse_bad_bodies(
    sim_client: httpx.AsyncClient, route: str, body: dict[str, Any]
) -> None:
    """A bad fault request is a 400 with an error message, and arms nothing."""
    answer = await sim_client.post(f"/__simulator/faults/{route}", json=body)
    assert answer.status_code == 400
    assert "error" in answer.json()
    assert (await sim_client.get("/__simulator/faults")).json() == {"armed": []}


async def test_faults_route_lists_armed_faults(sim_client: httpx.AsyncClient) -> None:
    """``GET /__simulator/faults`` shows what is armed and how much is left."""
    await sim_client.post("/__simulator/faults/fail", json={"count": 3, "errno": 20010})
    await sim_client.post("/__simulator/faults/stall", json={"endpoint": "login", "seconds": 5})
    await sim_client.post("/__simulator/faults/drip", json={"count": -1, "interval": 0.2})
    armed = (await sim_client.get("/__simulator/faults")).json()["armed"]
    assert armed == [
        {"kind": "fail", "remaining": 3, "endpoint": None, "errno": "20010"},
        {"kind": "stall", "remaining": 1, "endpoint": "login", "seconds": 5.0},
        {"kind": "drip", "remaining": -1, "endpoint": None, "interval": 0.2},
    ]


async def test_stall_released_by_clear_in_process(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """A stalled call stays in flight until the faults are cleared, then answers normally."""
    sim_state.stall_next(1)
    call = asyncio.create_task(_query(sim_client, sim_token))
    await eventually(lambda: sim_state.stats.in_flight > 0)
    assert not call.done()
    sim_state.clear_faults()
    assert (await call).json()["status"] == "Success"


async def test_latency_and_jitter_set_by_config_route(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState
) -> None:
    """Latency and jitter are switched at run time and read back (not timed)."""
    answer = await sim_client.post("/__simulator/config", json={"latency": 0.01, "jitter": 0.02})
    assert (answer.json()["latency"], answer.json()["jitter"]) == (0.01, 0.02)
    assert (sim_state.config.latency, sim_state.config.jitter) == (0.01, 0.02)
    assert (await sim_client.post(LOGIN, json={"username": "x"})).json()["errno"] == "20003"


@pytest.mark.parametrize(
    "body",
    [{"latency": -1}, {"unknown_numbers": "maybe"}, {"username": "root"}, {"token_ttl": 0}],
)
async def test_config_route_refuses_bad_changes(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, body: dict[str, Any]
) -> None:
    """Invalid or non-runtime settings are a 400 and change nothing."""
    before = sim_state.config
    assert (await sim_client.post("/__simulator/config", json=body)).status_code == 400
    assert before == sim_state.config


async def test_serial_mode_serves_one_call_at_a_time(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """With ``serial`` on, concurrent calls are all in flight but answered one by one."""
    sim_state.configure(serial=True, latency=0.01)
    active = 0
    peak = 0
    original = sim_state.delay

    async def counting_delay() -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await original()
        active -= 1

    sim_state.delay = counting_delay  # type: ignore[method-assign]
    answers = await asyncio.gather(*(_query(sim_client, sim_token) for _ in range(5)))
    assert all(answer.json()["status"] == "Success" for answer in answers)
    assert peak == 1
    assert sim_state.stats_json()["max_in_flight"] == 5


async def test_stats_shape_and_reset(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """``/__simulator/stats`` has every counter; ``/__simulator/reset`` zeroes them only."""
    await _query(sim_client, sim_token)
    await sim_client.post(LOGIN, json={"username": "api", "password": "x"})
    stats = (await sim_client.get("/__simulator/stats")).json()
    assert stats == {
        "calls": {"login": 2, "conference/query": 1},
        "query_numbers": ["6400"],
        "logins_succeeded": 1,
        "logins_failed": 1,
        "logins_locked": 0,
        "live_tokens": 1,
        "heartbeats": 0,
        "heartbeats_refused": 0,
        "logouts": 0,
        "in_flight": 0,
        "max_in_flight": 1,
        "in_session_numbers": [],
        "live": {},
    }
    assert (await sim_client.post("/__simulator/reset")).json() == {"ok": True}
    after = (await sim_client.get("/__simulator/stats")).json()
    assert (
        after["calls"],
        after["query_numbers"],
        after["logins_failed"],
        after["live_tokens"],
    ) == ({}, [], 0, 1)
    assert sim_state.lockout.failures("127.0.0.1") == 1


async def test_admin_unknown_route_and_wrong_method(sim_client: httpx.AsyncClient) -> None:
    """Admin mistakes get JSON 404/405, never the PBX envelope or an HTML page."""
    assert (await sim_client.post("/__simulator/nope")).status_code == 404
    wrong = await sim_client.get("/__simulator/faults/clear")
    assert (wrong.status_code, wrong.json()) == (405, {"error": "use POST"})
    assert (await sim_client.post("/__simulator/faults/fail", content=b"[")).status_code == 400


async def test_down_without_server_runner_is_clear_error(sim_client: httpx.AsyncClient) -> None:
    """Under plain ASGI, ``faults/down`` answers 409 saying it needs SimulatorServer."""
    answer = await sim_client.post("/__simulator/faults/down", json={"seconds": 1})
    assert answer.status_code == 409
    assert "SimulatorServer" in answer.json()["error"]
