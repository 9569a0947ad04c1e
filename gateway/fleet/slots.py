"""The PBX concurrency cap across the whole fleet: a semaphore of expiring leases.

Each call to the PBX holds a lease in a Redis sorted set (member: lease id, score: expiry
by Redis's own clock). A lease is taken only while fewer than ``limit`` unexpired ones
exist, atomically in one Lua script; a replica that dies holding leases loses them when
they expire (``lease_seconds``, longer than any PBX call may take). Waiting is bounded:
past ``max_wait`` the caller gets ``PBX_BUSY``. With Redis down, only the replica's own
cap applies (see :mod:`gateway.fleet.link`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from gateway.errors import PbxBusyError, PbxTimeoutError
from gateway.fleet.link import RedisLink, script

_ACQUIRE: Final = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[1]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

_NO_REDIS: Final = -1


class FleetSlots:
    """``async with slots.lease(endpoint):`` holds one of the fleet's PBX request slots."""

    def __init__(
        self, link: RedisLink, *, limit: int, lease_seconds: float, max_wait: float
    ) -> None:
        self._link = link
        self._key = link.key("pbx-slots")
        self._limit = limit
        self._lease_ms = int(lease_seconds * 1000)
        self._max_wait = max_wait

    @asynccontextmanager
    async def lease(self, endpoint: str) -> AsyncIterator[None]:
        lease_id = uuid.uuid4().hex
        give_up = time.monotonic() + self._max_wait
        delay = 0.005
        while True:
            got = await script(
                self._link,
                _ACQUIRE,
                [self._key],
                [self._lease_ms, self._limit, lease_id],
                _NO_REDIS,
            )
            if got == _NO_REDIS:  # Redis is down: the local cap is all there is
                yield
                return
            if got == 1:
                break
            if time.monotonic() >= give_up:
                raise PbxBusyError(
                    f"the fleet already has {self._limit} requests running at the PBX and this "
                    f"one waited {self._max_wait:.0f} s for a slot; try again shortly",
                    endpoint=endpoint,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        try:
            yield
        except PbxTimeoutError as exc:
            if not exc.reached_pbx:
                await self._release(lease_id)
            # else: the PBX may still be working on it: the lease runs out by itself
            raise
        except BaseException:
            await self._release(lease_id)
            raise
        else:
            await self._release(lease_id)

    async def _release(self, lease_id: str) -> None:
        key = self._key
        await self._link.run(lambda client: client.zrem(key, lease_id), 0)
