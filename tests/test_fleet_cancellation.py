"""The fleet's forever-loops stop when cancelled, even when a Redis call swallowed the cancel.

redis-py may turn a command interrupted by a cancellation into its own connection error
(and on Python 3.11 its ``wait_for`` may return the result instead), so the task never sees
the ``CancelledError`` and a plain ``while True`` runs on: the app's shutdown, which
cancels and awaits these tasks, would wait forever. Only a fake client can swallow a
cancellation on cue, so these tests use one; the loops under test are the real ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.fleet import link as link_module
from gateway.fleet.cache import SharedCache
from gateway.fleet.link import RedisLink
from gateway.fleet.sealing import Sealer
from gateway.secrets import Secret

HANG_BOUND = 5.0
"""Seconds after which a loop that did not stop is called hung (a bound, not a timing)."""


class SwallowingRedis:
    """Answers every call by waiting until cancelled, then raising redis-py's connection
    error instead of the cancellation, as an interrupted command can."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = asyncio.Event()
        self.swallowing = True
        """False: a cancellation goes through (the test's clean-up, whatever happened)."""

    async def _swallow(self) -> None:
        self.calls += 1
        self.entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if not self.swallowing:
                raise
            raise RedisConnectionError("Connection closed by server.") from None

    async def ping(self) -> bool:
        await self._swallow()
        return True

    def pubsub(self) -> SwallowingPubSub:
        return SwallowingPubSub(self)

    async def aclose(self) -> None:
        return None


class SwallowingPubSub:
    def __init__(self, redis: SwallowingRedis) -> None:
        self._redis = redis

    async def __aenter__(self) -> SwallowingPubSub:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def subscribe(self, channel: str) -> None:
        return None

    async def listen(self) -> AsyncIterator[dict[str, Any]]:
        await self._redis._swallow()
        yield {"type": "subscribe"}  # never reached: the swallowed cancel raised


def _link(fake: SwallowingRedis) -> RedisLink:
    link = RedisLink(Secret("redis://127.0.0.1:1"))  # never connected: the fake answers
    link.client = fake  # type: ignore[assignment]
    return link


async def test_link_close_stops_a_probe_whose_ping_swallowed_the_cancel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis down, the probe pinging: close() cancels it and returns, with no second ping."""
    monkeypatch.setattr(link_module, "PROBE_INTERVAL", 0.01)
    fake = SwallowingRedis()
    link = _link(fake)
    link._probe = asyncio.create_task(link._probe_forever())
    await asyncio.wait_for(fake.entered.wait(), HANG_BOUND)

    closing = asyncio.create_task(link.close())
    done, _ = await asyncio.wait({closing}, timeout=HANG_BOUND)
    calls, fake.swallowing = fake.calls, False
    if not done:  # the loop pinged on (as it did): let the cancellations through, then fail
        link._probe.cancel()
        await asyncio.wait({closing}, timeout=HANG_BOUND)

    assert closing in done, "close() hung: the probe ran on after its cancel was swallowed"
    assert link._probe.cancelled()
    assert calls == 1


async def test_invalidation_listener_stops_when_its_subscription_swallowed_the_cancel() -> None:
    """The shared cache's listener, cancelled while it waits on the channel, ends."""
    fake = SwallowingRedis()
    link = _link(fake)
    link.up = True
    cache = SharedCache(
        link,
        ttl=30,
        stale_ttl=3600,
        claim_seconds=5,
        wait_seconds=2,
        sealer=Sealer(Secret("k" * 32)),
    )
    forgotten: list[str] = []
    listener = asyncio.create_task(cache.listen(forgotten.append))
    await asyncio.wait_for(fake.entered.wait(), HANG_BOUND)

    listener.cancel()
    done, _ = await asyncio.wait({listener}, timeout=HANG_BOUND)
    calls, fake.swallowing = fake.calls, False
    if not done:  # it subscribed again (as it did): let the cancellation through, then fail
        listener.cancel()
        await asyncio.wait({listener}, timeout=HANG_BOUND)

    assert listener in done and listener.cancelled(), "the listener ran on after its cancel"
    assert calls == 1
    assert forgotten == []
