"""The fleet's shared cache on a real Redis, as the fleet tests build it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from gateway.fleet.cache import SharedCache
from gateway.fleet.link import RedisLink
from gateway.fleet.sealing import Sealer
from gateway.secrets import Secret
from tests.processes import RedisProcess


@contextlib.asynccontextmanager
async def shared_cache(redis_process: RedisProcess, key: str) -> AsyncIterator[SharedCache]:
    """A started :class:`SharedCache` (TTL 30 s, stale 1 h) sealing with ``key``."""
    link = RedisLink(Secret(redis_process.url))
    await link.start()
    try:
        yield SharedCache(
            link,
            ttl=30,
            stale_ttl=3600,
            claim_seconds=5,
            wait_seconds=2,
            sealer=Sealer(Secret(key)),
        )
    finally:
        await link.close()
