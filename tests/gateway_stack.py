"""Fixtures that run the real gateway against the real simulator.

``gateway_stack(**settings)`` starts a simulated PBX and the gateway on loopback sockets
(both real uvicorn servers in the test's event loop) and returns a :class:`Stack` with a
GraphQL client, the simulator's state (counters, fault switches) and a fake clock the
gateway's caches and breaker read, so tests move TTLs without sleeping.

A test that also takes the ``pbx_profile`` fixture runs once per firmware profile
(``gateway.simulator.profiles.PROFILES``): its simulator plays that device variant, on top
of any ``sim_config`` the test gives. :func:`variant` tells such a test what the variant
does, so an expectation that legitimately depends on it is written per variant, not skipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.demo import demo_settings
from gateway.runtime import Runtime
from gateway.serving import LoopbackServer
from gateway.simulator import SimulatorConfig, SimulatorServer, SimulatorState
from gateway.simulator.profiles import PROFILES, profile_config
from tests.timing import FakeClock


@dataclasses.dataclass
class Stack:
    """A running simulator + gateway pair."""

    sim: SimulatorServer
    gateway: LoopbackServer
    client: httpx.AsyncClient
    clock: FakeClock

    @property
    def pbx(self) -> SimulatorState:
        """The simulated PBX's live state: counters and fault switches."""
        return self.sim.state

    def gateway_runtime(self) -> Runtime:
        """The gateway's long-lived objects (session, store, breaker) for white-box counts."""
        runtime: Runtime = self.gateway.app.runtime
        return runtime

    def calls(self, endpoint: str = "conference/query") -> int:
        """How many times the PBX received ``endpoint``."""
        return int(self.pbx.stats.calls.get(endpoint, 0))

    async def sim_login_with_wrong_password(self) -> None:
        """One failed login from this machine's address, straight to the simulator."""
        async with httpx.AsyncClient(base_url=self.sim.base_url) as pbx:
            await pbx.post("/api/v2.0.0/login", json={"username": "api", "password": "0" * 32})

    async def graphql(
        self, query: str, variables: dict[str, Any] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """POST one GraphQL document and return the decoded body."""
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = variables
        response = await self.client.post("/graphql", json=body, **kwargs)
        result: dict[str, Any] = response.json()
        return result


StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture(params=list(PROFILES))
def pbx_profile(request: pytest.FixtureRequest) -> str:
    """A firmware profile's name: a test taking this fixture runs against every profile."""
    name: str = request.param
    return name


def variant(profile: str) -> SimulatorConfig:
    """What the firmware profile ``profile`` does (its fields, on the default config)."""
    return profile_config(profile)


@pytest.fixture
async def gateway_stack(request: pytest.FixtureRequest) -> AsyncIterator[StackFactory]:
    """Start a simulator + gateway; keyword arguments override gateway Settings fields
    (``security=`` a whole SecuritySettings; by default the demo's, without rate limits),
    ``sim_config=`` sets the simulator's SimulatorConfig (with the test's ``pbx_profile``,
    if it takes one, applied on top)."""
    profile = (
        str(request.getfixturevalue("pbx_profile"))
        if "pbx_profile" in request.fixturenames
        else None
    )
    async with AsyncExitStack() as exits:

        async def start(sim_config: SimulatorConfig | None = None, **overrides: Any) -> Stack:
            if profile is not None:
                sim_config = profile_config(profile, base=sim_config)
            sim = await exits.enter_async_context(SimulatorServer(sim_config))
            clock = FakeClock()
            settings = demo_settings(sim.base_url, sim.report_port)
            # Live sources open the report channel and may poll: only the tests that are about
            # them turn them on (live_source="auto"), so other tests' PBX counts stay theirs.
            overrides.setdefault("live_source", "off")
            # Rate limits have tests of their own; elsewhere they would only add noise.
            unlimited = dataclasses.replace(
                settings.security, rate=1e6, burst=1e6, miss_rate=1e6, miss_burst=1e6
            )
            overrides.setdefault("security", unlimited)
            settings = dataclasses.replace(settings, **overrides)
            gateway = await exits.enter_async_context(
                LoopbackServer(create_app(settings, clock=clock), live=settings.live_transport)
            )
            runtime: Runtime = gateway.app.runtime
            await runtime.session.started()  # the start-up login, as in production
            client = await exits.enter_async_context(
                httpx.AsyncClient(base_url=gateway.base_url, timeout=30)
            )
            return Stack(sim=sim, gateway=gateway, client=client, clock=clock)

        yield start
