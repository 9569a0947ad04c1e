"""The fleet's one live source: a Redis lease, and a source that runs only while holding it.

In a fleet, exactly one replica holds the PBX's report channel (a second connection would
double every event, and whether a PBX accepts several report connections for one API user
is not documented). The replicas contend for one Redis key, ``<prefix>live:lease``:

- **acquire**: ``SET key value NX PX ttl`` (in a script that also draws the new *term*);
- **renew**: every ``ttl/3`` the holder extends the key, only if it still holds its own
  value (compare-and-set, one Lua script);
- **release**: on shutdown the holder deletes the key only if it is still its own
  (compare-and-delete) and announces it on ``<prefix>live:lease:released``, so a waiting
  replica takes over at once instead of at its next try.

**Failover bound.** A holder that dies without releasing renewed at most ``ttl/3`` before
(its key lives ``ttl`` from then); a waiting replica tries every ``ttl/3``. So another
replica holds the lease at most ``ttl + ttl/3`` after the holder died (13.3 s with the
default ``GATEWAY_LIVE_LEASE_TTL`` of 10 s), then its source connects and resyncs.

**Fencing.** A holder that fails to renew (Redis unreachable, too slow, or the key is no
longer its own) stops its source at once. It also stops by itself when the key could have
expired: every renew must be answered before ``sent + ttl`` of the last successful one,
counted on this process's clock from *before* it sent the command, so the holder always
gives up before Redis lets the key go. Each acquisition draws a **term**, larger than every
earlier one (Redis's clock in milliseconds, or the last term + 1 if that is not larger);
what the holder publishes carries it, so replicas drop whatever a former holder still had
in flight (:mod:`gateway.live.bus`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Final

from redis.exceptions import RedisError

from gateway.fleet.cancelled import stop_if_cancelled
from gateway.fleet.link import RedisLink, script
from gateway.live.channel import subscribed
from gateway.live.contracts import LiveSink, LiveSource

logger = logging.getLogger(__name__)

# KEYS: the lease, the term counter. ARGV: this contender's token, the TTL in ms.
# Answers the new term, or 0 when somebody else holds the lease.
_ACQUIRE: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local last = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local term = math.max(now_ms, last + 1)
local value = ARGV[1] .. ' ' .. term
if not redis.call('SET', KEYS[1], value, 'NX', 'PX', ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[2], term)
return term
"""

# KEYS: the lease. ARGV: the holder's value, the TTL in ms. 1: extended; 0: not ours.
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: the lease. ARGV: the holder's value, the release channel. 1: released; 0: not ours.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released')
  return 1
end
return 0
"""


class Lease:
    """One replica's hold on the fleet's live-source lease; see the module docstring."""

    def __init__(
        self,
        link: RedisLink,
        *,
        ttl: float,
        name: str = "live:lease",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._link = link
        self.key = link.key(name)
        self._term_key = link.key(name, "term")
        self.channel = link.key(name, "released")
        self.ttl = ttl
        self.interval = ttl / 3
        self._ttl_ms = max(1, int(ttl * 1000))
        self._clock = clock
        self._token = uuid.uuid4().hex
        self._value: str | None = None
        self._term: int | None = None
        self._deadline = 0.0
        self.tries = 0
        self.acquired = 0
        self.renewals = 0
        self.lost = 0
        self.released = 0

    @property
    def term(self) -> int | None:
        """The term of the current hold, or None when this replica does not hold the lease
        (or could no longer be sure it does)."""
        if self._term is not None and self._clock() >= self._deadline:
            return None  # the key may have expired in Redis: behave as not holding
        return self._term

    async def try_acquire(self) -> int | None:
        """Take the lease if nobody holds it: its term, or None (held by another, or no
        Redis)."""
        self.tries += 1
        sent = self._clock()
        term = await script(
            self._link, _ACQUIRE, [self.key, self._term_key], [self._token, self._ttl_ms], 0
        )
        if not term:
            return None
        self._term = int(term)
        self._value = f"{self._token} {self._term}"
        self._deadline = sent + self.ttl
        self.acquired += 1
        logger.info("this replica now holds the live lease (term %d)", self._term)
        stop_if_cancelled()  # held, and recorded: the caller's cleanup releases it
        return self._term

    async def acquire(self) -> int:
        """Wait until this replica holds the lease; its term.

        Tries every ``ttl/3``, and at once when a holder announces a release. The
        announcement channel is subscribed before the first try, so a release between a
        try and the wait after it is not missed.
        """
        while True:
            try:
                async with subscribed(self._link, self.channel) as pubsub:
                    while (term := await self.try_acquire()) is None:
                        stop_if_cancelled()
                        await _released(pubsub, self.interval)
                    return term
            except (RedisError, OSError, TimeoutError) as exc:
                stop_if_cancelled()
                # Redis is away: nobody can hold the lease now; try again after a while.
                logger.debug("live lease: waiting without Redis (%s)", type(exc).__name__)
                await asyncio.sleep(self.interval)

    async def keep(self) -> None:
        """Renew every ``ttl/3`` while holding; return as soon as the hold is lost (fenced):
        a renew refused or unanswered, or the deadline past without one."""
        while self._value is not None:
            wait = min(self.interval, self._deadline - self._clock())
            if wait > 0:
                await asyncio.sleep(wait)
            sent = self._clock()
            left = self._deadline - sent
            renewed = False
            if left > 0:
                with contextlib.suppress(TimeoutError):
                    renewed = bool(
                        await asyncio.wait_for(
                            script(self._link, _RENEW, [self.key], [self._value, self._ttl_ms], 0),
                            left,
                        )
                    )
            stop_if_cancelled()
            if not renewed:
                self._lose()
                return
            self._deadline = sent + self.ttl
            self.renewals += 1

    async def release(self) -> None:
        """Give the lease up (if still ours) and tell the waiting replicas at once."""
        value, self._value, self._term = self._value, None, None
        if value is None:
            return
        done = await script(self._link, _RELEASE, [self.key], [value, self.channel], 0)
        if done:
            self.released += 1
            logger.info("released the live lease")

    def _lose(self) -> None:
        self.lost += 1
        logger.warning(
            "lost the live lease (Redis did not renew it in time, or another replica holds "
            "it); stopping this replica's live source"
        )
        self._term = None
        # ``_value`` stays: release() deletes the key if it is still ours (Redis was only
        # slow), so another replica need not wait for it to expire.


class LeasedSource:
    """A :class:`~gateway.live.contracts.LiveSource` that runs ``inner`` only while this
    replica holds ``lease``: waits to acquire, runs ``inner.run(sink)``, cancels it the
    moment the lease is lost, and tries again; releases on the way out."""

    def __init__(self, lease: Lease, inner: LiveSource) -> None:
        self._lease = lease
        self._inner = inner
        self.terms = 0
        """How many times this replica has run ``inner`` under the lease."""

    async def run(self, sink: LiveSink) -> None:
        while True:
            stop_if_cancelled()
            try:
                await self._lease.acquire()
            except asyncio.CancelledError:
                await asyncio.shield(self._lease.release())  # drawn as the cancel came
                raise
            self.terms += 1
            source = asyncio.create_task(self._inner.run(sink), name="live source (leased)")
            keeper = asyncio.create_task(self._lease.keep(), name="live lease renewal")
            try:
                await asyncio.wait({source, keeper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                # Stop the source first, then let the lease go: never two sources at once.
                await _cancelled(keeper)
                await _cancelled(source)
                await asyncio.shield(self._lease.release())
            if source.done() and not source.cancelled():
                # The source ended by itself: it cannot work at all here (see LiveSource.run);
                # the lease is released so another replica may try, and the caller decides.
                source.result()  # re-raises its error, if any
                return


async def _released(pubsub: Any, seconds: float) -> None:
    """Wait up to ``seconds`` for a release announcement on ``pubsub``."""
    give_up = time.monotonic() + seconds
    while (left := give_up - time.monotonic()) > 0:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
        if message is not None and message.get("type") == "message":
            return


async def _cancelled(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it to finish, keeping its outcome for the caller."""
    if not task.done():
        task.cancel()
    await asyncio.wait({task})
