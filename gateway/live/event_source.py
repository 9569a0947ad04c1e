"""Events: the PBX's TCP report channel as a :class:`~gateway.live.contracts.LiveSource`.

One connection (:mod:`gateway.pbx.report_channel`); each ``ConferenceStatus`` becomes one
``sink.room_changed`` with no PBX call. When the channel drops it is opened again after a
back-off with jitter (:class:`Backoff`: 1 s doubling to 60 s, each delay drawn from its
upper half, so replicas restarted together do not reconnect in step), and after every
(re)connect a *resync*, one ``query_in_session`` of every room through the PBX session (its
cap and breaker), tells the sink the whole listing, so a change made while the channel was
down is never missed. Nobody watching, no resync: a later subscriber asks for itself.

Lockout-safe: the report login counts toward the PBX's per-address lockout like an API
login, so it goes through the PBX session's guard (:class:`~gateway.pbx.login_guard.
LoginGuard`): no attempt while the guard refuses one, a refusal recorded there (cool-down,
no third try of the same credentials, the hard stop), ``IP locked`` as a lockout back-off.
API and report logins together therefore stay below the PBX's five failures. Nothing is
tried before the API login has worked (so the credentials are known good).

``known`` is what the events (and resyncs) said of each room: the supervisor's
reconciliation compares a poll with it to find an event the PBX never sent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from gateway.errors import PbxAuthError, PbxError, PbxFeatureUnavailableError, PbxLockedOutError
from gateway.live.contracts import LiveSink
from gateway.pbx.report_channel import (
    LOGIN_TIMEOUT_SECONDS,
    MAX_LINE_BYTES,
    ChannelCounts,
    ReportChannel,
    ReportChannelError,
    open_report_channel,
)
from gateway.pbx.session import PbxSession
from gateway.pbx.sessions_query import LiveSession, MemberNotes
from gateway.secrets import Secret

logger = logging.getLogger(__name__)

Listing = Mapping[str, LiveSession]
Sleep = Callable[[float], Awaitable[None]]
# A connection that lived this long was healthy: the next drop starts the back-off from its
# first step again. A channel that drops sooner (events or not) keeps backing off, so a
# flapping PBX costs at most one login and one resync per minute.
HEALTHY_SECONDS = 60.0


@dataclass(frozen=True)
class Backoff:
    """Delays between connection attempts: ``first`` doubling up to ``cap``, jittered."""

    first: float = 1.0
    cap: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The delay before attempt ``attempt`` + 1 (0-based): in [base/2, base]."""
        base: float = min(self.cap, self.first * 2.0 ** min(attempt, 30))
        return base / 2 + rng.uniform(0, base / 2)


@dataclass
class EventCounts:
    """What the event source did, for ``/metrics`` and tests."""

    connects: int = 0
    """Logins that opened the channel."""
    reconnects: int = 0
    """Connection attempts after the channel was up once (or failed to come up)."""
    refusals: int = 0
    """Report logins the PBX refused (or answered ``IP locked``)."""
    resyncs: int = 0
    channel: ChannelCounts = field(default_factory=ChannelCounts)


@dataclass(frozen=True)
class ChannelTarget:
    """Where the report channel is and who logs in to it."""

    host: str
    port: int
    username: str
    secret: Callable[[], Secret | None]
    """The clear password, read at each attempt (a rotated file applies); None: only an
    MD5 is configured, so the channel cannot log in."""


class EventSource:
    """The report channel, kept open; see the module's docstring."""

    def __init__(
        self,
        session: PbxSession,
        target: ChannelTarget,
        resync: Callable[[], Awaitable[Listing]],
        *,
        backoff: Backoff = Backoff(),
        login_timeout: float = LOGIN_TIMEOUT_SECONDS,
        max_line: int = MAX_LINE_BYTES,
        give_up: bool = True,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        notes: MemberNotes | None = None,
    ) -> None:
        self._session, self._target, self._resync = session, target, resync
        self._backoff, self._login_timeout, self._max_line = backoff, login_timeout, max_line
        self._give_up = give_up
        self._sleep, self._rng = sleep, rng or random.Random()  # noqa: S311 (jitter, not a secret)
        self._clock, self._notes = clock, notes
        self.counts = EventCounts()
        self.known: dict[str, LiveSession | None] = {}
        self.connected = False
        self._logged: str | None = None
        self._refused = False

    async def run(self, sink: LiveSink) -> None:
        """Keep the channel open until cancelled. Returns only when events cannot work:
        no clear password, or (``give_up``, for a caller that can poll instead) the first
        connection failed or a login was refused. Without ``give_up`` a refused login waits
        for the guard to allow the next one (after the cool-down; never a third time with
        the same credentials)."""
        attempt, ever_up = 0, False
        while True:
            secret = self._target.secret()
            if secret is None:
                logger.warning(
                    "live: the TCP report login sends the password in clear, and only its MD5 "
                    "is configured (PBX_PASSWORD_MD5 / _FILE); events cannot be received"
                )
                return
            try:
                self._session.check_allowed()  # the shared guard: no PBX contact
            except PbxError as exc:
                self._once(f"live: report channel login not tried now: {exc.message}")
                await self._sleep(self._backoff.cap)  # only the guard is asked again
                continue
            if ever_up or attempt:
                self.counts.reconnects += 1
            channel = await self._open(secret)
            if channel is None:
                if self._refused:
                    if self._give_up:
                        return  # polling needs no second login: never retried blindly
                    continue  # the guard decides when (and whether) to try again
                if not ever_up and self._give_up:
                    return
                await self._pause(attempt)
                attempt += 1
                continue
            ever_up, self._logged = True, None
            if await self._listen(channel, sink):
                attempt = 0
            await self._pause(attempt)
            attempt += 1

    async def _open(self, secret: Secret) -> ReportChannel | None:
        target = self._target
        self._refused = False
        try:
            channel = await open_report_channel(
                target.host,
                target.port,
                target.username,
                secret,
                login_timeout=self._login_timeout,
                max_line=self._max_line,
                counts=self.counts.channel,
                notes=self._notes,
            )
        except PbxLockedOutError as exc:
            self.counts.refusals += 1
            self._refused = True
            self._session.report_login_locked(exc)
            return None
        except PbxAuthError as exc:
            self.counts.refusals += 1
            self._refused = True
            self._session.report_login_refused(exc)
            return None
        except ReportChannelError as exc:
            self._once(f"live: report channel unavailable: {exc.log_line}")
            return None
        self._session.report_login_accepted()
        self.counts.connects += 1
        logger.info("live: report channel open (%s:%d)", target.host, target.port)
        return channel

    async def _listen(self, channel: ReportChannel, sink: LiveSink) -> bool:
        """Resync, then hand on every status until the channel ends; whether it was healthy."""
        opened = self._clock()
        self.connected = True
        try:
            await resync_into(sink, self._resync, self.known, self.counts)
            async for status in channel.statuses():
                self.known[status.number] = status.session
                sink.room_changed(status.number, status.session)
        except ReportChannelError as exc:
            logger.warning("live: %s; reconnecting", exc.message)
        finally:
            self.connected = False
            await channel.close()
        return self._clock() - opened >= HEALTHY_SECONDS

    async def _pause(self, attempt: int) -> None:
        await self._sleep(self._backoff.delay(attempt, self._rng))

    def _once(self, message: str) -> None:
        """Log a waiting reason once until it changes (a retry loop must not flood logs)."""
        if message != self._logged:
            self._logged = message
            logger.warning("%s", message)


async def resync_into(
    sink: LiveSink,
    resync: Callable[[], Awaitable[Listing]],
    known: dict[str, LiveSession | None],
    counts: EventCounts,
) -> None:
    """After (re)connecting: one listing of every room into the sink (and into ``known``);
    nothing when nobody watches (a later subscriber asks for itself)."""
    watched = sink.watched_rooms()
    if not watched:
        known.clear()  # nothing proven while nobody watched: start afresh
        return
    try:
        listing = await resync()
    except PbxFeatureUnavailableError:
        raise  # no live data on this firmware: the supervisor turns live updates off
    except PbxError as exc:
        # Events still flow; the reconciliation poll corrects what this missed.
        logger.warning("live: resync after connecting failed: %s", exc.message)
        return
    counts.resyncs += 1
    for number in set(known) | set(watched):
        known[number] = listing.get(number)
    known.update(listing)
    sink.rooms_listed(listing, resync=True)
