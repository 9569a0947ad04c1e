"""The Redis connection, and the rule for when Redis is gone: carry on alone.

Every shared operation goes through :meth:`RedisLink.run` with a local fallback. When
Redis does not answer (down, partitioned, slow past a short timeout) the link is marked
down, the operation returns its fallback, and the replica works on its own state:
readiness and metrics say so. A background probe pings Redis and marks the link up again
when it answers, so shared behaviour resumes without a restart. Redis's own persistence
keeps what it held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeout

from gateway.fleet.cancelled import stop_if_cancelled
from gateway.secrets import Secret
from gateway.settings import Settings

T = TypeVar("T")
logger = logging.getLogger(__name__)

PROBE_INTERVAL: Final = 1.0
SLOW_ANSWERS_BEFORE_DOWN: Final = 3
"""A refused connection means down at once; a slow answer may be a blip (a busy host)."""


class RedisLink:
    """A Redis client that degrades to "not available" instead of failing requests."""

    def __init__(
        self,
        url: Secret,
        *,
        prefix: str = Settings.redis_prefix,
        timeout: float = Settings.redis_timeout,
    ) -> None:
        self.prefix = prefix
        parts = urlsplit(url.reveal())
        self._where = f"{parts.hostname or parts.path}:{parts.port or 6379}"  # never the password
        self.client: redis.Redis = redis.Redis.from_url(
            url.reveal(),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=False,
            retry_on_timeout=False,
        )
        self.up = False
        self.failures = 0
        self._slow_in_a_row = 0
        self._probe: asyncio.Task[None] | None = None

    def key(self, *parts: str) -> str:
        """A namespaced key, e.g. ``pbxgw:conf:6400``."""
        return self.prefix + ":".join(parts)

    async def start(self) -> None:
        """Connect (or note that Redis is not there yet) and start the rejoin probe."""
        await self._ping(first=True)
        self._probe = asyncio.create_task(self._probe_forever())

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        with contextlib.suppress(RedisError, OSError):
            await self.client.aclose()

    async def run(self, operation: Callable[[redis.Redis], Awaitable[T]], fallback: T) -> T:
        """``operation(client)``, or ``fallback`` when Redis is down or fails now."""
        if not self.up:
            return fallback
        try:
            result = await operation(self.client)
        except (RedisTimeout, TimeoutError) as exc:
            self._slow_in_a_row += 1
            if self._slow_in_a_row >= SLOW_ANSWERS_BEFORE_DOWN:
                self._down(exc)
            return fallback
        except (RedisConnectionError, OSError) as exc:  # refused, reset, wrong password
            self._down(exc)
            return fallback
        except RedisError as exc:
            # A command refused (out of memory, a script flushed): Redis is there, so this
            # one operation falls back; marking the link down would flap every second.
            logger.warning("Redis refused a command (%s); using local state for it", exc)
            return fallback
        self._slow_in_a_row = 0
        return result

    async def _ping(self, *, first: bool = False) -> None:
        try:
            await self.client.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            if first:  # say so now: otherwise replicas silently act as separate clients
                logger.warning(
                    "Redis at %s does not answer (%s); this replica works on its own state "
                    "until it does",
                    self._where,
                    type(exc).__name__,
                )
            self._down(exc)
        else:
            if not self.up:
                logger.info("Redis is reachable: sharing cache, PBX session and limits")
            self.up = True

    def _down(self, exc: BaseException) -> None:
        self.failures += 1
        self._slow_in_a_row = 0
        if self.up:
            logger.warning(
                "Redis stopped answering (%s); working on local state until it is back",
                type(exc).__name__,
            )
        self.up = False

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            if not self.up:
                await self._ping()
                stop_if_cancelled()  # a ping that swallowed close()'s cancel: stop anyway


async def script(link: RedisLink, source: str, keys: list[str], args: list[Any], fallback: T) -> T:
    """Run a Lua script atomically (EVAL), with the link's fallback rule."""

    async def run(client: redis.Redis) -> T:
        result: T = await client.eval(source, len(keys), *keys, *args)
        return result

    return await link.run(run, fallback)
