"""The simulator's login: credentials, the MD5 password, and the five-strikes IP lockout."""

from __future__ import annotations

import re

import httpx
from starlette.applications import Starlette

from gateway.simulator import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    SimulatorConfig,
    SimulatorState,
    create_simulator_app,
    password_digest,
)

LOGIN = "/api/v2.0.0/login"
GOOD = {"username": DEMO_USERNAME, "password": password_digest(DEMO_PASSWORD)}
BAD = {"username": DEMO_USERNAME, "password": password_digest("wrong")}


async def test_login_success_answers_token_and_transport(sim_client: httpx.AsyncClient) -> None:
    """A good login answers Success, a 32 lower-hex token and transport TCP."""
    answer = (await sim_client.post(LOGIN, json=GOOD)).json()
    assert {"status", "token", "transport"} == set(answer)
    assert (answer["status"], answer["transport"]) == ("Success", "TCP")
    assert re.fullmatch(r"[0-9a-f]{32}", answer["token"])


async def test_login_tokens_differ_per_login(sim_client: httpx.AsyncClient) -> None:
    """Two logins get two different tokens."""
    first = (await sim_client.post(LOGIN, json=GOOD)).json()["token"]
    second = (await sim_client.post(LOGIN, json=GOOD)).json()["token"]
    assert first != second


async def test_login_plain_password_fails_20003(sim_client: httpx.AsyncClient) -> None:
    """The password must be sent as its MD5: the plain text is a bad login."""
    answer = (await sim_client.post(LOGIN, json={**GOOD, "password": DEMO_PASSWORD})).json()
    assert answer == {"status": "Failed", "errno": "20003"}


async def test_login_wrong_username_fails_20003(sim_client: httpx.AsyncClient) -> None:
    """An unknown username answers 20003."""
    answer = (await sim_client.post(LOGIN, json={**GOOD, "username": "admin"})).json()
    assert answer["errno"] == "20003"


async def test_login_blank_fields_count_as_failures(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState
) -> None:
    """A login without username or password is a bad login and counts toward the lockout."""
    answer = (await sim_client.post(LOGIN, json={"version": "2.0.0"})).json()
    assert answer["errno"] == "20003"
    assert sim_state.lockout.failures("127.0.0.1") == 1


async def test_lockout_after_five_failures_refuses_good_password(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState
) -> None:
    """Five failed logins lock the address: even the right password then answers 20002."""
    errnos = [(await sim_client.post(LOGIN, json=BAD)).json()["errno"] for _ in range(5)]
    assert errnos == ["20003"] * 5
    assert (await sim_client.post(LOGIN, json=GOOD)).json() == {
        "status": "Failed",
        "errno": "20002",
    }
    stats = sim_state.stats_json()
    assert (stats["logins_failed"], stats["logins_succeeded"], stats["logins_locked"]) == (5, 0, 1)


async def test_lockout_expires_after_its_duration(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState
) -> None:
    """Once the lock's 600 seconds have passed, the right password works again."""
    for _ in range(5):
        await sim_client.post(LOGIN, json=BAD)
    sim_state.advance_time(599)
    assert (await sim_client.post(LOGIN, json=GOOD)).json()["errno"] == "20002"
    sim_state.advance_time(2)
    assert (await sim_client.post(LOGIN, json=GOOD)).json()["status"] == "Success"


async def test_lockout_tiny_duration_and_threshold_configurable() -> None:
    """Threshold and duration come from the config (2 failures, 0.01 s here)."""
    app = create_simulator_app(SimulatorConfig(lockout_threshold=2, lockout_seconds=0.01))
    state: SimulatorState = app.state.simulator
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pbx.test") as client:
        await client.post(LOGIN, json=BAD)
        assert (await client.post(LOGIN, json=BAD)).json()["errno"] == "20003"
        assert (await client.post(LOGIN, json=GOOD)).json()["errno"] == "20002"
        state.advance_time(0.02)
        assert (await client.post(LOGIN, json=GOOD)).json()["status"] == "Success"


async def test_lockout_success_resets_failure_count(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState
) -> None:
    """Four failures, a success, four failures: never locked."""
    for _ in range(4):
        await sim_client.post(LOGIN, json=BAD)
    await sim_client.post(LOGIN, json=GOOD)
    for _ in range(4):
        await sim_client.post(LOGIN, json=BAD)
    assert (await sim_client.post(LOGIN, json=GOOD)).json()["status"] == "Success"
    assert sim_state.lockout.locked_addresses(sim_state.now()) == []


async def test_lockout_is_per_client_address(sim_app: Starlette) -> None:
    """A locked address does not lock another one."""
    clients = {
        host: httpx.AsyncClient(
            transport=httpx.ASGITransport(app=sim_app, client=(host, 5000)),
            base_url="http://pbx.test",
        )
        for host in ("10.0.0.1", "10.0.0.2")
    }
    async with clients["10.0.0.1"] as first, clients["10.0.0.2"] as second:
        for _ in range(5):
            await first.post(LOGIN, json=BAD)
        assert (await first.post(LOGIN, json=GOOD)).json()["errno"] == "20002"
        assert (await second.post(LOGIN, json=GOOD)).json()["status"] == "Success"


async def test_lockout_unlock_all_admin_route_lifts_lock(sim_client: httpx.AsyncClient) -> None:
    """``POST /__simulator/lockout/clear`` is the PBX admin unblocking the IP."""
    for _ in range(5):
        await sim_client.post(LOGIN, json=BAD)
    assert (await sim_client.post("/__simulator/lockout/clear")).json() == {"ok": True}
    assert (await sim_client.post(LOGIN, json=GOOD)).json()["status"] == "Success"


async def test_credentials_change_at_run_time(
    sim_client: httpx.AsyncClient, sim_token: str
) -> None:
    """After someone changes the API user, the old password fails and old tokens end."""
    body = {"username": "api2", "password": "n3w"}
    assert (await sim_client.post("/__simulator/credentials", json=body)).status_code == 200
    assert (await sim_client.post(LOGIN, json=GOOD)).json()["errno"] == "20003"
    new = {"username": "api2", "password": password_digest("n3w")}
    assert (await sim_client.post(LOGIN, json=new)).json()["status"] == "Success"
    heartbeat = await sim_client.post("/api/v2.0.0/heartbeat", params={"token": sim_token})
    assert heartbeat.json()["errno"] == "20004"


async def test_credentials_change_can_keep_tokens(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """``end_tokens=False`` changes the password but leaves existing tokens alive."""
    sim_state.set_credentials("api", "other", end_tokens=False)
    heartbeat = await sim_client.post("/api/v2.0.0/heartbeat", params={"token": sim_token})
    assert heartbeat.json()["status"] == "Success"
