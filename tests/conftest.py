"""Shared fixtures: the PBX simulator in-process (ASGI) and over loopback HTTP.

Generic on purpose, so the gateway's tests reuse them: ``sim_app`` is a fresh simulated PBX,
``sim_state`` its live state, ``sim_client`` an httpx client talking to it in-process,
``sim_token`` a logged-in token, and ``sim_server`` the same PBX on a real loopback socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from gateway.simulator import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    SimulatorServer,
    SimulatorState,
    create_simulator_app,
    password_digest,
)


@pytest.fixture
def sim_app() -> Starlette:
    """A fresh simulated PBX with the default config and rooms."""
    return create_simulator_app()


@pytest.fixture
def sim_state(sim_app: Starlette) -> SimulatorState:
    """The live state of ``sim_app``: the admin API in Python."""
    state: SimulatorState = sim_app.state.simulator
    return state


@pytest.fixture
async def sim_client(sim_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client speaking to ``sim_app`` in-process (client address 127.0.0.1)."""
    transport = httpx.ASGITransport(app=sim_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pbx.test") as client:
        yield client


@pytest.fixture
async def sim_token(sim_client: httpx.AsyncClient) -> str:
    """A token from a successful login with the demo credentials."""
    body = {"username": DEMO_USERNAME, "password": password_digest(DEMO_PASSWORD)}
    response = await sim_client.post("/api/v2.0.0/login", json=body)
    token: str = response.json()["token"]
    return token


@pytest.fixture
async def sim_server() -> AsyncIterator[SimulatorServer]:
    """The simulated PBX on a real loopback port; ``.base_url``, ``.state``, ``.go_down()``."""
    async with SimulatorServer() as server:
        yield server


# The real gateway against the real simulator over loopback: the `gateway_stack` fixture;
# a seed per test (the `rng` fixture), printed when the test fails.
pytest_plugins = ["tests.gateway_stack", "tests.seeding"]
