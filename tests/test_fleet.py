"""Three gateway processes, one Redis, one simulated PBX that ends older tokens on login.

Every assertion reads the simulator's own counters: whatever the fleet does, the PBX must
see one well-behaved client.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from gateway.simulator import DEMO_PASSWORD, SimulatorConfig, run_simulator_in_thread
from gateway.simulator.profiles import profile_config
from gateway.simulator.server import SimulatorServer
from tests.processes import GatewayProcess, RedisProcess, redis_process
from tests.timing import wait_until

__all__ = ["redis_process"]  # the fixture, imported so pytest finds it here

TEN = [str(n) for n in range(6400, 6410)]
TEN_QUERY = "{ conferences(numbers: [" + ", ".join(f'"{n}"' for n in TEN) + "]) { number } }"


class Fleet:
    """The simulator and three replicas; ``graphql`` spreads requests round-robin."""

    def __init__(self, sim: SimulatorServer, replicas: list[GatewayProcess]) -> None:
        self.sim, self.replicas = sim, replicas
        self._next = itertools.cycle(replicas)

    @property
    def stats(self) -> Any:
        return self.sim.state.stats

    def calls(self, endpoint: str = "conference/query") -> int:
        return int(self.stats.calls.get(endpoint, 0))

    async def burst(self, documents: list[str], *, width: int = 60) -> list[dict[str, Any]]:
        gate = asyncio.Semaphore(width)
        async with httpx.AsyncClient(timeout=30) as client:

            async def one(document: str, replica: GatewayProcess) -> dict[str, Any]:
                async with gate:
                    response = await client.post(f"{replica.url}/graphql", json={"query": document})
                    body: dict[str, Any] = response.json()
                    return body

            return await asyncio.gather(*(one(d, next(self._next)) for d in documents))


def start_fleet(
    tmp_path: Path, redis: RedisProcess, sim: SimulatorServer, **env: str
) -> list[GatewayProcess]:
    base = {
        "PBX_URL": sim.base_url,
        "PBX_USERNAME": "api",
        "PBX_PASSWORD": DEMO_PASSWORD,
        "GATEWAY_AUTH": "none",
        "GATEWAY_RATE_LIMIT": "100000",
        "GATEWAY_RATE_BURST": "100000",
        "GATEWAY_MISS_RATE_LIMIT": "100000",
        "GATEWAY_MISS_BURST": "100000",
        "GATEWAY_REDIS_URL": redis.url,
        "GATEWAY_REDIS_TOKEN_KEY": Fernet.generate_key().decode(),
        "GATEWAY_LOG_LEVEL": "WARNING",
    }
    replicas = [GatewayProcess({**base, **env}, tmp_path / f"replica-{i}.log") for i in range(3)]
    return replicas


@pytest.fixture
def fleet_factory(tmp_path: Path, redis_process: RedisProcess) -> Iterator[Any]:
    """``fleet_factory(sim_config, ready=True, **env)`` starts the simulator and 3 replicas."""
    started: list[tuple[Any, list[GatewayProcess]]] = []

    def start(
        sim_config: SimulatorConfig | None = None, *, ready: bool = True, **env: str
    ) -> Fleet:
        config = sim_config or SimulatorConfig(new_login_kills_old_tokens=True, latency=0.02)
        context = run_simulator_in_thread(config)
        sim = context.__enter__()
        replicas = start_fleet(tmp_path, redis_process, sim, **env)
        started.append((context, replicas))
        if ready:
            for replica in replicas:
                replica.wait_ready()
        return Fleet(sim, replicas)

    yield start
    for context, replicas in started:
        for replica in replicas:
            replica.stop()
        context.__exit__(None, None, None)


async def test_fleet_burst_costs_one_query_and_one_login(fleet_factory: Any) -> None:
    """300 requests for 10 cold rooms over three replicas: one query, one login, no churn."""
    fleet = fleet_factory()
    results = await fleet.burst([TEN_QUERY] * 300)
    assert all("errors" not in r and len(r["data"]["conferences"]) == 10 for r in results)
    assert fleet.calls() == 1
    assert fleet.stats.logins_succeeded == 1
    assert fleet.stats.logins_failed == 0


async def test_fleet_serves_what_another_replica_fetched(fleet_factory: Any) -> None:
    """A room fetched through replica A is served by B and C with no PBX call."""
    fleet = fleet_factory()
    a, b, c = fleet.replicas
    async with httpx.AsyncClient() as client:
        query = {"query": '{ conference(number: "6405") { name } }'}
        first = (await client.post(f"{a.url}/graphql", json=query)).json()
        calls = fleet.calls()
        others = [(await client.post(f"{r.url}/graphql", json=query)).json() for r in (b, c)]
    assert others == [first, first]
    assert fleet.calls() == calls == 1


async def test_fleet_expired_tokens_cost_one_relogin(fleet_factory: Any) -> None:
    """Tokens expired on the PBX: the fleet logs in once more, not once per replica."""
    fleet = fleet_factory()
    await fleet.burst(['{ conference(number: "6400") { name } }'] * 3)
    fleet.sim.state.expire_tokens()
    results = await fleet.burst(
        [f'{{ conference(number: "{n}") {{ name }} }}' for n in TEN[1:]] * 3, width=9
    )
    assert all("errors" not in r for r in results)
    assert fleet.stats.logins_succeeded == 2


async def test_fleet_wrong_credentials_fail_one_login(fleet_factory: Any) -> None:
    """Wrong credentials: one failed login for the whole fleet, however many requests."""
    fleet = fleet_factory(
        SimulatorConfig(new_login_kills_old_tokens=True, password="changed-on-the-pbx"),
        ready=False,
    )
    for replica in fleet.replicas:
        wait_until(lambda r=replica: r.readyz().get("reasons"), what="start-up login verdict")
    results = await fleet.burst([TEN_QUERY] * 90)
    codes = {e["extensions"]["code"] for r in results for e in r.get("errors", [])}
    assert codes == {"PBX_AUTH_FAILED"}
    assert fleet.stats.logins_failed == 1
    assert fleet.stats.logins_locked == 0


async def test_fleet_survives_redis_going_away_and_rejoins(
    fleet_factory: Any, redis_process: RedisProcess
) -> None:
    """Redis stopped: requests still succeed on local state and readiness says so;
    Redis back: replicas share again."""
    fleet = fleet_factory()
    assert all("errors" not in r for r in await fleet.burst([TEN_QUERY] * 30))
    redis_process.stop()
    during = await fleet.burst(
        [f'{{ conference(number: "{n}") {{ name }} }}' for n in ("6410", "6411")] * 15
    )
    assert [r for r in during if "errors" in r] == []
    for replica in fleet.replicas:
        wait_until(lambda r=replica: "down" in str(r.readyz()["checks"]), what="redis down seen")
    redis_process.start()
    for replica in fleet.replicas:
        wait_until(lambda r=replica: r.readyz()["checks"]["redis"] == "up", what="rejoined")
    a, b, _ = fleet.replicas
    fresh_room = {"query": '{ conference(number: "6399") { name } }'}
    async with httpx.AsyncClient() as client:
        calls = fleet.calls()
        await client.post(f"{a.url}/graphql", json=fresh_room)
        after_a = fleet.calls()
        await client.post(f"{b.url}/graphql", json=fresh_room)
    assert after_a == calls + 1
    assert fleet.calls() == after_a  # B was served what A fetched: sharing resumed


async def test_fleet_pbx_concurrency_cap_holds(fleet_factory: Any) -> None:
    """Three replicas with a cap of 2 each: the PBX never sees more than 2 at once."""
    fleet = fleet_factory(SimulatorConfig(new_login_kills_old_tokens=True, latency=0.1))
    documents = [f'{{ conference(number: "{7000 + i}") {{ name }} }}' for i in range(60)]
    results = await fleet.burst(documents, width=60)
    assert all("errors" not in r for r in results)
    # Each replica sends up to its two lanes at once (misses queue behind them and merge):
    # six calls wanted at once, at least, so the fleet-wide cap had something to hold.
    assert fleet.calls() >= 6
    assert fleet.stats.max_in_flight <= 2


async def test_fleet_unknown_number_settled_once_for_the_fleet(fleet_factory: Any) -> None:
    """A PBX answering short batches with an empty list: 60 requests for 6405+6999 over three
    replicas all answer 6405, with one batch and one `all` listing for the whole fleet."""
    fleet = fleet_factory(profile_config("unknown-empty", latency=0.02))
    pair = '{ conferences(numbers: ["6405", "6999"]) { number } }'
    results = await fleet.burst([pair] * 60)
    assert all(r == {"data": {"conferences": [{"number": "6405"}]}} for r in results), results
    assert fleet.stats.query_numbers.count("all") == 1
    assert fleet.calls() == 2
    again = await fleet.burst([pair] * 30)
    assert again == results[:30]
    assert fleet.calls() == 2
