"""The fleet's login guard counts per credential (issue 15.6), against a real redis-server.

Two replicas share one Redis and one simulated PBX: one with a wrong password, one with the
right one. Whatever the good replica does, the bad replica's rejected password is tried at
most twice (a cool-down apart), and the bad replica reports not ready, naming no secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
from cryptography.fernet import Fernet

from gateway.app import create_app
from gateway.demo import demo_settings
from gateway.pbx.login_guard import MAX_UNCHANGED_FAILURES
from gateway.runtime import Runtime
from gateway.secrets import Secret
from gateway.serving import LoopbackServer
from gateway.settings import PasswordSource
from gateway.simulator import SimulatorServer, password_digest
from gateway.simulator.profiles import profile_config
from tests.processes import RedisProcess, redis_process
from tests.timing import FakeClock

__all__ = ["redis_process"]  # the fixture, imported so pytest finds it here

WRONG = "wrong-fleet-password"
COOLDOWN = 0.25  # seconds: short, so the test can wait out real cool-downs
ROOM = "query Room($n: String!) { conference(number: $n) { number } }"


@dataclasses.dataclass
class Replica:
    """One in-process gateway of the fleet."""

    server: LoopbackServer
    client: httpx.AsyncClient
    clock: FakeClock

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.server.app.runtime
        return runtime

    async def query(self, number: str) -> dict[str, Any]:
        response = await self.client.post(
            "/graphql", json={"query": ROOM, "variables": {"n": number}}
        )
        body: dict[str, Any] = response.json()
        return body

    async def readyz(self) -> httpx.Response:
        return await self.client.get("/readyz")


@contextlib.asynccontextmanager
async def replica(
    sim: SimulatorServer, redis: RedisProcess, key: str, password: str | None = None
) -> AsyncIterator[Replica]:
    """A gateway on ``sim`` sharing ``redis`` under the fleet key ``key``."""
    settings = demo_settings(sim.base_url)
    if password is not None:
        settings = dataclasses.replace(
            settings, pbx_password=PasswordSource(md5=Secret(password_digest(password)))
        )
    unlimited = dataclasses.replace(
        settings.security, rate=1e6, burst=1e6, miss_rate=1e6, miss_burst=1e6
    )
    settings = dataclasses.replace(
        settings,
        security=unlimited,
        redis_url=Secret(redis.url),
        redis_token_key=Secret(key),
        pbx_login_cooldown=COOLDOWN,
    )
    clock = FakeClock()
    async with LoopbackServer(create_app(settings, clock=clock)) as server:
        runtime: Runtime = server.app.runtime
        await runtime.session.started()
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            yield Replica(server, client, clock)


async def test_fleet_guard_rejected_password_never_retried_after_other_replica_succeeds(
    redis_process: RedisProcess,
) -> None:
    """A replica with a wrong password (login-30003 firmware) and one with the right one:
    over six token expiries a cool-down apart, the good one logs in each time, yet the
    wrong password is tried only twice; the bad replica serves with the fleet's token but
    reports not ready, with a reason that names no secret."""
    key = Fernet.generate_key().decode()
    async with SimulatorServer(profile_config("login-30003")) as sim:
        stats = sim.state.stats
        async with replica(sim, redis_process, key, password=WRONG) as bad:
            assert stats.logins_failed == 1  # its start-up login, not retried
            async with replica(sim, redis_process, key) as good:
                assert stats.logins_succeeded == 1
                for cycle in range(6):
                    sim.state.expire_tokens()
                    await bad.query(str(7000 + cycle))  # may try its password once more
                    served = await good.query(str(7100 + cycle))
                    assert "errors" not in served, served
                    after = await bad.query(str(7200 + cycle))  # the fleet's token serves it
                    assert "errors" not in after, after
                    # The shared guard keeps wall-clock deadlines: let a real cool-down pass.
                    await asyncio.sleep(COOLDOWN * 1.2)
                    for clock in (bad.clock, good.clock):
                        clock.advance(COOLDOWN * 1.2)
                    sim.state.advance_time(COOLDOWN * 1.2)
                assert stats.logins_failed == MAX_UNCHANGED_FAILURES
                assert stats.logins_succeeded == 7
                assert stats.logins_locked == 0

                ready_bad, ready_good = await bad.readyz(), await good.readyz()
                assert ready_good.status_code == 200
                assert ready_bad.status_code == 503
                body = ready_bad.json()
                assert body["ready"] is False
                assert body["checks"]["pbxCredentials"] == "rejected"
                assert body["reasons"][0].startswith("PBX_AUTH_FAILED: this replica's")
                for secret in (WRONG, password_digest(WRONG), key):
                    assert secret not in ready_bad.text


async def test_fleet_guard_is_kept_per_credential_in_redis(redis_process: RedisProcess) -> None:
    """Redis holds the guard under a fingerprint of the credentials: the rejected password,
    its MD5 and the username appear in no key and no value."""
    import redis.asyncio as aioredis

    key = Fernet.generate_key().decode()
    async with SimulatorServer() as sim, replica(sim, redis_process, key, password=WRONG):
        pass
    client = aioredis.from_url(redis_process.url, decode_responses=True)
    try:
        keys = [str(k) for k in await client.keys("*")]
        guard_keys = [k for k in keys if ":guard:" in k]
        assert len(guard_keys) == 1
        values = [str(await client.get(k)) for k in keys if await client.type(k) == "string"]
    finally:
        await client.aclose()
    dump = " ".join(keys + values)
    for secret in (WRONG, password_digest(WRONG)):
        assert secret not in dump
    assert '"failures": 1' in dump
