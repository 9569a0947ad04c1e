"""The fleet's shared cache against a real Redis: writes never undo a change."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from cryptography.fernet import Fernet

from gateway.fleet.cache import SharedCache
from gateway.fleet.link import RedisLink
from gateway.pbx.conferences import Conference
from gateway.secrets import Secret
from tests.fleet_helpers import shared_cache
from tests.processes import RedisProcess, redis_process

__all__ = ["redis_process"]

OLD = Conference("6400", "Sales", None, None, False, True, (), True, False, None)


@pytest.fixture
async def shared(redis_process: RedisProcess) -> AsyncIterator[SharedCache]:
    async with shared_cache(redis_process, Fernet.generate_key().decode()) as cache:
        yield cache


async def test_fleet_cache_write_after_forget_is_dropped(shared: SharedCache) -> None:
    """A fetch that began before a change must not write what it read: it may be the old room."""
    seen = await shared.versions(["6400"])
    await shared.forget("6400")  # the room changed (another replica's mutation)
    await shared.write({"6400": OLD}, time.time() - 5, seen)
    assert await shared.read(["6400"]) == {}


async def test_fleet_cache_write_without_a_change_is_kept(shared: SharedCache) -> None:
    """With no change in between, the answer is shared with its age."""
    seen = await shared.versions(["6400"])
    await shared.write({"6400": OLD}, time.time() - 5, seen)
    (room, age) = (await shared.read(["6400"]))["6400"]
    assert room == OLD
    assert age > 0


async def test_fleet_cache_rooms_round_trip_exactly(shared: SharedCache) -> None:
    """Every field survives the trip through Redis, "no such room" included."""
    await shared.write({"6400": OLD, "9999": None}, time.time())
    read = await shared.read(["6400", "9999", "1234"])
    assert read["6400"][0] == OLD
    assert read["9999"][0] is None
    assert "1234" not in read


async def test_fleet_link_says_when_redis_is_not_there_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A replica whose Redis does not answer at start says so (naming where, never the
    password), instead of silently acting as a separate PBX client."""
    from tests.loopback import free_port

    link = RedisLink(Secret(f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"), timeout=0.5)
    await link.start()
    await link.close()
    assert link.up is False
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("does not answer" in w and "127.0.0.1" in w for w in warnings)
    assert "s3cret-pw" not in caplog.text
