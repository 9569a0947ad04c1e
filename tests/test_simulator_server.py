"""The simulator over real loopback HTTP: the curl flow and connection-level faults."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.simulator import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    SimulatorConfig,
    SimulatorServer,
    password_digest,
    run_simulator_in_thread,
)
from tests.timing import eventually

LOGIN = "/api/v2.0.0/login"
QUERY = "/api/v2.0.0/conference/query"
GOOD = {"username": DEMO_USERNAME, "password": password_digest(DEMO_PASSWORD)}
JSON_UTF8 = {"Content-Type": "application/json; charset=utf-8"}


async def _login(base_url: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url) as client:
        return await client.post(LOGIN, json=GOOD)


async def _wait_until_up(base_url: str) -> httpx.Response:
    """Retry a login until the server accepts connections again (bounded by the test timeout)."""
    while True:
        try:
            return await _login(base_url)
        except httpx.ConnectError:
            await asyncio.sleep(0.02)


async def test_server_curl_shaped_login_and_query(sim_server: SimulatorServer) -> None:
    """Login then query as the doc's curl examples do, over a real socket."""
    async with httpx.AsyncClient(base_url=sim_server.base_url) as client:
        login = await client.post(
            LOGIN,
            content=f'{{"username":"api","password":"{GOOD["password"]}"}}',
            headers=JSON_UTF8,
        )
        token = login.json()["token"]
        response = await client.post(
            f"{QUERY}?token={token}", content=b'{\n\t"number": "6401"\n}', headers=JSON_UTF8
        )
    assert (
        response.status_code,
        response.headers["connection"],
        response.headers["server"],
    ) == (200, "close", "Boa/0.94.14rc21")
    assert response.json()["conferences"][0]["name"] == "PM"
    assert sim_server.base_url == f"http://127.0.0.1:{sim_server.port}"


async def test_server_drop_breaks_connection_mid_body(sim_server: SimulatorServer) -> None:
    """A drop promises a body, sends part of it and closes: the client sees a protocol error."""
    sim_server.state.drop_next(1)
    with pytest.raises(httpx.RemoteProtocolError):
        await _login(sim_server.base_url)
    assert (await _login(sim_server.base_url)).json()["status"] == "Success"
    assert sim_server.state.stats_json()["calls"] == {"login": 2}


async def test_server_down_refuses_then_comes_up_on_same_port(
    sim_server: SimulatorServer,
) -> None:
    """``go_down`` refuses connections; ``come_up`` serves again on the same port."""
    port = sim_server.port
    sim_server.go_down()
    with pytest.raises(httpx.ConnectError):
        await _login(sim_server.base_url)
    sim_server.come_up()
    assert (await _login(sim_server.base_url)).json()["status"] == "Success"
    assert port == sim_server.port


async def test_server_down_admin_route_comes_back_by_itself(sim_server: SimulatorServer) -> None:
    """``POST /__simulator/faults/down`` with seconds refuses, then reopens on its own."""
    async with httpx.AsyncClient(base_url=sim_server.base_url) as client:
        answer = await client.post("/__simulator/faults/down", json={"seconds": 0.2})
    assert answer.json() == {"ok": True}
    with pytest.raises(httpx.ConnectError):
        await _login(sim_server.base_url)
    assert (await _wait_until_up(sim_server.base_url)).json()["status"] == "Success"


async def test_server_down_via_state_uses_server_runner(sim_server: SimulatorServer) -> None:
    """``state.go_down``/``state.come_up`` reach the server runner that registered itself."""
    sim_server.state.go_down()
    with pytest.raises(httpx.ConnectError):
        await _login(sim_server.base_url)
    sim_server.state.come_up()
    assert (await _login(sim_server.base_url)).json()["status"] == "Success"


async def test_server_stall_released_by_clear(sim_server: SimulatorServer) -> None:
    """A stalled call hangs until ``faults/clear``, then answers normally."""
    sim_server.state.stall_next(1)
    call = asyncio.create_task(_login(sim_server.base_url))
    await eventually(lambda: sim_server.state.stats.in_flight > 0)
    async with httpx.AsyncClient(base_url=sim_server.base_url) as client:
        assert (await client.post("/__simulator/faults/clear")).json() == {"ok": True}
    assert (await call).json()["status"] == "Success"


async def test_server_stop_not_blocked_by_stall() -> None:
    """Stopping the server releases an hour-long stall instead of waiting for it."""
    server = SimulatorServer()
    await server.start()
    server.state.stall_next(1, seconds=3600)
    call = asyncio.create_task(_login(server.base_url))
    await eventually(lambda: server.state.stats.in_flight > 0)
    await server.stop()
    await asyncio.gather(call, return_exceptions=True)
    assert call.done()
    assert server.state.shutting_down
    await server.stop()  # a second stop is harmless


async def test_server_max_in_flight_counts_concurrent_calls() -> None:
    """Concurrent clients show up in ``max_in_flight``; serial mode still lets them queue."""
    async with SimulatorServer(SimulatorConfig(latency=0.05, serial=True)) as server:
        await asyncio.gather(*(_login(server.base_url) for _ in range(4)))
        stats = server.state.stats_json()
    assert (stats["logins_succeeded"], stats["in_flight"], stats["max_in_flight"]) == (4, 0, 4)


def test_run_simulator_in_thread_serves_sync_clients() -> None:
    """The background-thread runner serves sync httpx and takes go_down/come_up."""
    with run_simulator_in_thread() as server:
        assert httpx.post(server.base_url + LOGIN, json=GOOD).json()["status"] == "Success"
        server.go_down()
        with pytest.raises(httpx.ConnectError):
            httpx.post(server.base_url + LOGIN, json=GOOD)
        server.come_up()
        assert httpx.post(server.base_url + LOGIN, json=GOOD).json()["status"] == "Success"
        assert server.state.stats_json()["logins_succeeded"] == 2


def test_run_simulator_in_thread_reports_bind_failure() -> None:
    """A port that cannot be bound raises in the caller's thread."""
    with run_simulator_in_thread() as server, pytest.raises(OSError):  # noqa: SIM117
        with run_simulator_in_thread(port=server.port):
            pass


async def test_server_drip_sends_the_answer_one_byte_at_a_time(sim_server: SimulatorServer) -> None:
    """A drip sends the real answer byte by byte, with its true length; the call is in
    flight until the last byte is out."""
    sim_server.state.drip_next(1, interval=0.005, endpoint="login")
    chunks: list[bytes] = []
    async with (
        httpx.AsyncClient(base_url=sim_server.base_url) as client,
        client.stream("POST", LOGIN, json=GOOD) as response,
    ):
        async for chunk in response.aiter_raw():
            chunks.append(chunk)
            if len(chunks) == 1:
                assert sim_server.state.stats.in_flight == 1
    body = b"".join(chunks)
    assert int(response.headers["content-length"]) == len(body)
    assert len(chunks) > 10  # many small pieces, not one answer
    assert httpx.Response(200, content=body).json()["status"] == "Success"
    await eventually(lambda: sim_server.state.stats.in_flight == 0)


async def test_server_drip_stops_when_the_client_hangs_up(sim_server: SimulatorServer) -> None:
    """A client that gives up mid-drip ends the call: it leaves the in-flight count."""
    sim_server.state.drip_next(1, interval=30.0, endpoint="login")
    async with (
        httpx.AsyncClient(base_url=sim_server.base_url) as client,
        client.stream("POST", LOGIN, json=GOOD) as response,
    ):
        async for _ in response.aiter_raw():
            break  # one byte, then hang up
    assert sim_server.state.stats.max_in_flight == 1
    await eventually(lambda: sim_server.state.stats.in_flight == 0)
