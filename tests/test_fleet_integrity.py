"""Fleet integrity against a real redis-server: Redis holds no PIN in the clear, every shared
entry is authenticated and dated, and a replica with the wrong fleet key stays off the PBX."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from cryptography.fernet import Fernet

from gateway.app import create_app
from gateway.demo import demo_settings
from gateway.fleet.cache import SharedCache
from gateway.fleet.sealing import Sealer
from gateway.pbx.conferences import Conference
from gateway.runtime import Runtime
from gateway.secrets import Secret
from gateway.serving import LoopbackServer
from gateway.simulator import SimulatorServer
from gateway.simulator.conference_data import default_conferences
from gateway.simulator.profiles import profile_config
from tests.fleet_helpers import shared_cache
from tests.processes import RedisProcess, redis_process

__all__ = ["redis_process"]

KEY = Fernet.generate_key().decode()
ROOM = Conference("6400", "Sales", "4821", "*907", False, True, (), True, False, None)
ALL_ROOMS = "{ conferences { number name participantPassword moderatorPassword } }"


# --- the shared cache's entries, read and tampered with directly ---------------------------


@pytest.fixture
async def shared(redis_process: RedisProcess) -> AsyncIterator[SharedCache]:
    async with shared_cache(redis_process, KEY) as cache:
        yield cache


async def raw_redis(redis_process: RedisProcess) -> Any:
    """A plain client reading Redis as anyone with access to it would (bytes, no key)."""
    return redis.Redis.from_url(redis_process.url)


async def test_sealed_entry_hides_the_pins_and_round_trips(
    shared: SharedCache, redis_process: RedisProcess
) -> None:
    """What Redis holds for a room names neither its PINs nor its name; it reads back exact."""
    await shared.write({"6400": ROOM}, time.time())
    await shared.write_listing([ROOM], time.time())
    client = await raw_redis(redis_process)
    async with client:
        blob = await client.get("pbxgw:conf:6400")
        listing = await client.get("pbxgw:listing")
    for value in (blob, listing):
        assert value is not None
        assert b"4821" not in value and b"*907" not in value and b"Sales" not in value
    assert (await shared.read(["6400"]))["6400"][0] == ROOM
    held = await shared.read_listing()
    assert held is not None and held[0] == [ROOM]


async def test_post_dated_entry_is_refused_once_logged(
    shared: SharedCache, redis_process: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry dated an hour ahead (even sealed with the right key) is a miss, logged once."""
    forged = shared.sealer.seal("pbxgw:conf:6400", {"number": "6400"}, time.time() + 3600)
    client = await raw_redis(redis_process)
    async with client:
        await client.set("pbxgw:conf:6400", forged)
    with caplog.at_level(logging.WARNING, logger="gateway.fleet.sealing"):
        assert await shared.read(["6400"]) == {}
        assert await shared.read(["6400"]) == {}
    assert shared.sealer.refused["future"] == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.fleet.sealing"]
    assert len(lines) == 1
    assert "pbxgw:conf:6400" in lines[0] and "future" in lines[0]


async def test_flipped_byte_is_refused(shared: SharedCache, redis_process: RedisProcess) -> None:
    """One byte changed anywhere in the sealed part: the MAC fails, the entry is a miss."""
    await shared.write({"6400": ROOM}, time.time())
    client = await raw_redis(redis_process)
    async with client:
        blob = bytearray(await client.get("pbxgw:conf:6400") or b"")
        blob[-20] ^= 0x01
        await client.set("pbxgw:conf:6400", bytes(blob))
    assert await shared.read(["6400"]) == {}
    assert shared.sealer.refused["mac"] == 1


async def test_entry_moved_to_another_room_is_refused(
    shared: SharedCache, redis_process: RedisProcess
) -> None:
    """Room 6400's sealed entry copied under 6401's key fails authentication."""
    await shared.write({"6400": ROOM}, time.time())
    client = await raw_redis(redis_process)
    async with client:
        await client.set("pbxgw:conf:6401", await client.get("pbxgw:conf:6400") or b"")
    assert await shared.read(["6401"]) == {}
    assert shared.sealer.refused["mac"] == 1


async def test_entry_older_than_the_stale_ttl_is_refused(
    shared: SharedCache, redis_process: RedisProcess
) -> None:
    """A validly sealed entry older than the stale TTL (a replay) is never served."""
    old = shared.sealer.seal("pbxgw:conf:6400", {"number": "6400"}, time.time() - 3700)
    client = await raw_redis(redis_process)
    async with client:
        await client.set("pbxgw:conf:6400", old)
    assert await shared.read(["6400"]) == {}
    assert await shared.stale_copies(["6400"]) == {}
    assert shared.sealer.refused["old"] == 2  # both reads refused it


async def test_plain_json_entry_and_listing_are_refused(
    shared: SharedCache, redis_process: RedisProcess
) -> None:
    """The old plaintext format (or anything written without the key) is not read."""
    plain = json.dumps({"at": time.time(), "room": {"number": "6400", "name": "Forged"}})
    client = await raw_redis(redis_process)
    async with client:
        await client.set("pbxgw:conf:6400", plain)
        await client.set("pbxgw:listing", json.dumps({"at": time.time(), "rooms": []}))
    assert await shared.read(["6400"]) == {}
    assert await shared.read_listing() is None
    assert shared.sealer.refused["unsealed"] == 2


async def test_entry_sealed_with_another_key_is_refused(
    shared: SharedCache, redis_process: RedisProcess
) -> None:
    """A replica with another fleet key cannot read (nor feed) this fleet's entries."""
    other = Sealer(Secret(Fernet.generate_key().decode()))
    client = await raw_redis(redis_process)
    async with client:
        await client.set("pbxgw:conf:6400", other.seal("pbxgw:conf:6400", None, time.time()))
    assert await shared.read(["6400"]) == {}
    assert shared.sealer.refused["mac"] == 1


# --- real gateways sharing one Redis and one simulated PBX ---------------------------------


@dataclasses.dataclass
class Replica:
    server: LoopbackServer
    client: httpx.AsyncClient

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.server.app.runtime
        return runtime

    async def graphql(self, query: str) -> dict[str, Any]:
        body: dict[str, Any] = (await self.client.post("/graphql", json={"query": query})).json()
        return body

    async def readyz(self) -> httpx.Response:
        return await self.client.get("/readyz")


ReplicaFactory = Callable[..., Awaitable[Replica]]


@pytest.fixture
async def fleet(
    redis_process: RedisProcess,
) -> AsyncIterator[tuple[SimulatorServer, ReplicaFactory]]:
    """A single-token simulated PBX, and ``replica(key)`` starting gateways on one Redis."""
    async with AsyncExitStack() as exits:
        sim = await exits.enter_async_context(SimulatorServer(profile_config("single-token")))

        async def replica(key: str = KEY, **overrides: Any) -> Replica:
            settings = demo_settings(sim.base_url)
            unlimited = dataclasses.replace(
                settings.security, rate=1e6, burst=1e6, miss_rate=1e6, miss_burst=1e6
            )
            settings = dataclasses.replace(
                settings,
                security=unlimited,
                redis_url=Secret(redis_process.url),
                redis_token_key=Secret(key),
                **overrides,
            )
            server = await exits.enter_async_context(LoopbackServer(create_app(settings)))
            await server.app.runtime.session.started()
            client = await exits.enter_async_context(
                httpx.AsyncClient(base_url=server.base_url, timeout=30)
            )
            return Replica(server, client)

        yield sim, replica


async def test_fleet_redis_holds_no_pin_or_room_name(
    fleet: tuple[SimulatorServer, ReplicaFactory], redis_process: RedisProcess
) -> None:
    """After serving every room, PINs included, no Redis key holds a PIN or a room name."""
    _sim, replica = fleet
    gateway = await replica()
    listing = await gateway.graphql(ALL_ROOMS)
    single = await gateway.graphql('{ conference(number: "6402") { participantPassword } }')
    assert "errors" not in listing and "errors" not in single
    rooms = default_conferences()
    secrets = {str(r[f]) for r in rooms for f in ("participantepassword", "moderatorpassword")}
    # Shorter strings ("PM", "*55") turn up in random ciphertext by chance: not evidence.
    secrets = {s for s in secrets | {str(r["name"]) for r in rooms} if len(s) >= 4}
    client = await raw_redis(redis_process)
    async with client:
        keys = [k async for k in client.scan_iter("*")]
        dump = b""
        for key in keys:
            kind = (await client.type(key)).decode()
            if kind == "string":
                dump += await client.get(key) or b""
            elif kind == "zset":
                dump += b"".join(await client.zrange(key, 0, -1))
    assert b"pbxgw:listing" in keys and b"pbxgw:conf:6402" in keys
    leaked = sorted(s for s in secrets if s.encode() in dump)
    assert leaked == []


async def test_post_dated_entry_is_not_served_as_fresh(
    fleet: tuple[SimulatorServer, ReplicaFactory], redis_process: RedisProcess
) -> None:
    """A room in Redis dated an hour ahead is refused: the gateway asks the PBX instead."""
    sim, replica = fleet
    gateway = await replica()
    forged = dataclasses.replace(ROOM, name="Forged")
    sealer = Sealer(Secret(KEY))
    plain = {**dataclasses.asdict(forged), "moderators": [], "prompt": None, "unreported": []}
    client = await raw_redis(redis_process)
    async with client:
        await client.set(
            "pbxgw:conf:6400", sealer.seal("pbxgw:conf:6400", plain, time.time() + 3600)
        )
    before = sim.state.stats.calls["conference/query"]
    result = await gateway.graphql('{ conference(number: "6400") { name } }')
    assert result == {"data": {"conference": {"name": "Sales"}}}
    assert sim.state.stats.calls["conference/query"] == before + 1
    assert gateway.runtime.fleet is not None
    # refused at each read (before the claim and after it), logged once
    assert gateway.runtime.fleet.cache.sealer.refused["future"] >= 1


async def test_replica_with_wrong_key_stays_off_the_pbx(
    fleet: tuple[SimulatorServer, ReplicaFactory], caplog: pytest.LogCaptureFixture
) -> None:
    """A replica whose key cannot read the fleet's token is not ready, says why (naming no
    secret), logs it once and makes no login: the good replica's token survives."""
    sim, replica = fleet
    good = await replica()
    assert sim.state.stats.logins_succeeded == 1
    wrong_key = Fernet.generate_key().decode()
    with caplog.at_level(logging.WARNING):
        bad = await replica(wrong_key)
        codes: set[str] = set()
        give_up = time.monotonic() + 3  # a window of requests, as a load balancer would send
        while time.monotonic() < give_up:
            result = await bad.graphql('{ conference(number: "6405") { name } }')
            codes |= {e["extensions"]["code"] for e in result.get("errors", [])}
            await asyncio.sleep(0.1)
        ready = await bad.readyz()
    assert codes == {"PBX_UNAVAILABLE"}
    assert sim.state.stats.logins_succeeded == 1  # no login from the bad replica
    assert sim.state.stats.calls.get("login", 0) == 1
    assert ready.status_code == 503
    body = ready.json()
    assert body["checks"]["pbxSession"] == "fleet token unreadable"
    assert any("cannot be decrypted" in reason for reason in body["reasons"])
    assert KEY not in ready.text and wrong_key not in ready.text
    unreadable = [r for r in caplog.records if "cannot be decrypted" in r.getMessage()]
    assert len(unreadable) == 1 and unreadable[0].levelname == "ERROR"
    assert KEY not in caplog.text and wrong_key not in caplog.text
    # The good replica's session was never ended: it still answers without a new login.
    assert (await good.readyz()).status_code == 200
    assert "errors" not in await good.graphql('{ conference(number: "6406") { name } }')
    assert sim.state.stats.logins_succeeded == 1
