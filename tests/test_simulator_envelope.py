"""The simulator's envelope: headers, HTTP 200 always, the common errno checks, fuzzed input."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from gateway.simulator import SimulatorState

LOGIN = "/api/v2.0.0/login"
QUERY = "/api/v2.0.0/conference/query"


def _failed(response: httpx.Response) -> str:
    """The errno of a Failed envelope, after checking it is one."""
    assert response.status_code == 200
    answer = json.loads(response.content)
    assert answer["status"] == "Failed"
    assert isinstance(answer["errno"], str)
    errno: str = answer["errno"]
    return errno


async def test_envelope_headers_match_the_device(sim_client: httpx.AsyncClient) -> None:
    """Answers carry Boa's Server header, Connection: close and a JSON content type."""
    response = await sim_client.post(LOGIN, json={})
    assert response.headers["server"] == "Boa/0.94.14rc21"
    assert response.headers["connection"] == "close"
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"])
async def test_envelope_non_post_answers_20001(sim_client: httpx.AsyncClient, method: str) -> None:
    """Any method but POST answers 20001, on a real endpoint or not."""
    assert _failed(await sim_client.request(method, LOGIN)) == "20001"
    assert _failed(await sim_client.request(method, "/index.html")) == "20001"


async def test_envelope_non_json_body_answers_20000(sim_client: httpx.AsyncClient) -> None:
    """A body that is not JSON, or JSON but not an object, answers 20000."""
    assert _failed(await sim_client.post(LOGIN, content=b"username=api")) == "20000"
    assert _failed(await sim_client.post(LOGIN, json=["api"])) == "20000"
    assert _failed(await sim_client.post(LOGIN, content=b"\xff\xfe{")) == "20000"


async def test_envelope_empty_body_answers_20007(sim_client: httpx.AsyncClient) -> None:
    """An empty body answers 20007."""
    assert _failed(await sim_client.post(LOGIN)) == "20007"
    assert _failed(await sim_client.post(LOGIN, content=b"  \n")) == "20007"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v2.0.0/extension/query",
        "/api/v2.0.0/",
        "/api/v2.0.0/login/",
        "/api/v1.1.0/login",
        "/",
        "/cgi-bin/../../etc/passwd",
        "/api/v2.0.0/conference",
    ],
)
async def test_envelope_unknown_endpoint_answers_10003(
    sim_client: httpx.AsyncClient, path: str
) -> None:
    """A POST to anything but a known endpoint answers 10003."""
    assert _failed(await sim_client.post(path, json={"number": "6400"})) == "10003"


async def test_envelope_check_order_method_before_path_before_body(
    sim_client: httpx.AsyncClient,
) -> None:
    """The documented order: method, then path, then body, then token."""
    assert _failed(await sim_client.get("/nowhere")) == "20001"
    assert _failed(await sim_client.post("/nowhere")) == "10003"
    assert _failed(await sim_client.post(QUERY)) == "20007"
    assert _failed(await sim_client.post(QUERY, json={})) == "20005"


async def test_envelope_unknown_calls_counted_as_unknown(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState
) -> None:
    """Calls to unknown paths are counted under ``unknown``; admin calls are not counted."""
    await sim_client.post("/nowhere")
    await sim_client.get("/__simulator/stats")
    assert sim_state.stats_json()["calls"] == {"unknown": 1}


async def test_envelope_fuzzed_requests_always_answer_envelope(
    sim_client: httpx.AsyncClient,
) -> None:
    """Random bytes, methods and paths always get a JSON Failed envelope with HTTP 200."""
    rng = random.Random(20003)
    endpoints = ["login", "heartbeat", "logout", "conference/query", "conference/update"]
    paths = [f"/api/v2.0.0/{name}" for name in endpoints] + ["/x", "/api/v2.0.0/%00", "/%ff"]
    methods = ["POST", "POST", "POST", "GET", "PUT", "DELETE", "PATCH"]
    for _ in range(200):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        path = rng.choice(paths)
        params = {"token": rng.choice(["", "x" * 32, "\x00"])}
        response = await sim_client.request(rng.choice(methods), path, content=body, params=params)
        _failed(response)


async def test_envelope_fuzzed_json_bodies_never_crash(
    sim_client: httpx.AsyncClient, sim_token: str
) -> None:
    """Odd JSON values in every field answer an envelope, never an exception."""
    odd: list[object] = [None, 0, -1, 1.5, True, [], {}, "", "all", "\u0000", "6400" * 100]
    for endpoint in ("conference/query", "conference/update", "login", "heartbeat"):
        for value in odd:
            body = {"number": value, "name": value, "username": value, "password": value}
            response = await sim_client.post(
                f"/api/v2.0.0/{endpoint}", params={"token": sim_token}, json=body
            )
            assert response.status_code == 200
            assert json.loads(response.content)["status"] in {"Success", "Failed"}
