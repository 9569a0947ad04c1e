"""The simulator's tokens: errors 20004/20005/20006, idle expiry, heartbeat, logout, kill modes."""

from __future__ import annotations

import httpx
import pytest

from gateway.simulator import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    SimulatorConfig,
    SimulatorState,
    create_simulator_app,
    password_digest,
)

LOGIN = "/api/v2.0.0/login"
QUERY = "/api/v2.0.0/conference/query"
HEARTBEAT = "/api/v2.0.0/heartbeat"
LOGOUT = "/api/v2.0.0/logout"
GOOD = {"username": DEMO_USERNAME, "password": password_digest(DEMO_PASSWORD)}


async def _query(client: httpx.AsyncClient, token: str | None) -> dict[str, object]:
    params = {} if token is None else {"token": token}
    answer: dict[str, object] = (
        await client.post(QUERY, params=params, json={"number": "6400"})
    ).json()
    return answer


async def _client_for(config: SimulatorConfig) -> tuple[httpx.AsyncClient, SimulatorState]:
    app = create_simulator_app(config)
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://pbx.test"), app.state.simulator


@pytest.mark.parametrize("token", [None, "", "   "])
async def test_token_blank_or_absent_answers_20005(
    sim_client: httpx.AsyncClient, token: str | None
) -> None:
    """No token, an empty one or a blank one answers 20005."""
    assert await _query(sim_client, token) == {"status": "Failed", "errno": "20005"}


async def test_token_never_issued_answers_20004(sim_client: httpx.AsyncClient) -> None:
    """A well-formed token the PBX never issued answers 20004."""
    assert await _query(sim_client, "0" * 32) == {"status": "Failed", "errno": "20004"}


async def test_token_valid_answers_query(sim_client: httpx.AsyncClient, sim_token: str) -> None:
    """A fresh token is accepted."""
    assert (await _query(sim_client, sim_token))["status"] == "Success"


async def test_token_idle_past_ttl_answers_20006(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """Thirty minutes without a call: the token has timed out, 20006, and stays so."""
    sim_state.advance_time(1801)
    assert (await _query(sim_client, sim_token))["errno"] == "20006"
    assert (await _query(sim_client, sim_token))["errno"] == "20006"
    assert sim_state.stats_json()["live_tokens"] == 0


async def test_token_expired_errno_option_answers_20004() -> None:
    """With ``expired_errno="20004"`` a timed-out token answers as unknown."""
    client, state = await _client_for(SimulatorConfig(expired_errno="20004"))
    async with client:
        token = (await client.post(LOGIN, json=GOOD)).json()["token"]
        state.advance_time(1801)
        assert (await _query(client, token))["errno"] == "20004"


async def test_token_any_call_extends_lifetime(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """Each call restarts the idle clock: three 20-minute gaps never time it out."""
    for _ in range(3):
        sim_state.advance_time(1200)
        assert (await _query(sim_client, sim_token))["status"] == "Success"


async def test_token_heartbeat_extends_lifetime(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """A heartbeat resets the idle clock to the full lifetime and is counted."""
    sim_state.advance_time(1500)
    answer = await sim_client.post(HEARTBEAT, params={"token": sim_token}, json={})
    assert answer.json() == {"status": "Success"}
    sim_state.advance_time(1500)
    assert (await _query(sim_client, sim_token))["status"] == "Success"
    assert sim_state.stats_json()["heartbeats"] == 1


async def test_heartbeat_accepts_empty_body(sim_client: httpx.AsyncClient, sim_token: str) -> None:
    """The heartbeat's fields are optional: no body at all is fine."""
    answer = await sim_client.post(HEARTBEAT, params={"token": sim_token})
    assert answer.json() == {"status": "Success"}


async def test_token_fractional_ttl_expires() -> None:
    """``token_ttl`` takes fractions of a second: 0.05 s idle is enough to time out."""
    client, state = await _client_for(SimulatorConfig(token_ttl=0.05))
    async with client:
        token = (await client.post(LOGIN, json=GOOD)).json()["token"]
        state.advance_time(0.06)
        assert (await _query(client, token))["errno"] == "20006"


async def test_logout_ends_token(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState, sim_token: str
) -> None:
    """Logout takes no body, answers Success, and the token then answers 20004."""
    answer = await sim_client.post(LOGOUT, params={"token": sim_token})
    assert answer.json() == {"status": "Success"}
    assert (await _query(sim_client, sim_token))["errno"] == "20004"
    stats = sim_state.stats_json()
    assert (stats["logouts"], stats["live_tokens"]) == (1, 0)


async def test_logout_without_token_answers_20005(sim_client: httpx.AsyncClient) -> None:
    """Logout checks its token like any call."""
    assert (await sim_client.post(LOGOUT)).json()["errno"] == "20005"


async def test_new_login_keeps_old_tokens_by_default(
    sim_client: httpx.AsyncClient, sim_token: str
) -> None:
    """By default a second login leaves the first token working."""
    await sim_client.post(LOGIN, json=GOOD)
    assert (await _query(sim_client, sim_token))["status"] == "Success"


async def test_new_login_kills_old_tokens_mode() -> None:
    """With ``new_login_kills_old_tokens`` the first token answers 20004 after a new login."""
    client, state = await _client_for(SimulatorConfig(new_login_kills_old_tokens=True))
    async with client:
        first = (await client.post(LOGIN, json=GOOD)).json()["token"]
        second = (await client.post(LOGIN, json=GOOD)).json()["token"]
        assert (await _query(client, first))["errno"] == "20004"
        assert (await _query(client, second))["status"] == "Success"
        assert state.stats_json()["live_tokens"] == 1


async def test_expire_tokens_admin_route_times_out_every_token(
    sim_client: httpx.AsyncClient, sim_token: str
) -> None:
    """``POST /__simulator/tokens/expire`` times out all tokens; new logins still work."""
    answer = (await sim_client.post("/__simulator/tokens/expire")).json()
    assert answer == {"expired": 1}
    assert (await _query(sim_client, sim_token))["errno"] == "20006"
    fresh = (await sim_client.post(LOGIN, json=GOOD)).json()["token"]
    assert (await _query(sim_client, fresh))["status"] == "Success"


async def test_live_tokens_counts_unexpired_only(
    sim_client: httpx.AsyncClient, sim_state: SimulatorState
) -> None:
    """``live_tokens`` counts tokens that would still be accepted."""
    for _ in range(3):
        await sim_client.post(LOGIN, json=GOOD)
    assert sim_state.stats_json()["live_tokens"] == 3
    sim_state.advance_time(1801)
    assert sim_state.stats_json()["live_tokens"] == 0
