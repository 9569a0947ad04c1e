"""The feed: this process's subscribers to live rooms, each sent the room's state, then its changes.

A :class:`LiveFeed` is the :class:`~gateway.live.contracts.LiveSink` a source (the PBX's report
channel, a poller, the fleet's bus) tells what it learns. For every room somebody is subscribed
to it keeps the last state it sent (who is in the room, or nobody) and the subscribers.

- **First the current state**: a :class:`Subscription`'s first read yields one ``INITIAL``
  update per room asked, in the order asked: the feed's own state when it has one for the
  room, else the :class:`~gateway.session_cache.SessionCache`'s listing (one cached
  ``query_in_session``, single-flight: subscribers starting together cost at most one PBX
  call). A room that could not be read (the PBX down) gets an ``INITIAL`` carrying the error,
  and its next known state is sent as a change.
- **Then every change**: one ``CHANGED`` (``RESYNCED`` after the event channel came back) per
  new state of the room. A state equal to the last one sent (same members, or nobody again)
  is not sent: a poll that finds nothing new costs subscribers nothing.
- **Cheap and bounded publishing**: telling the feed never awaits and does no I/O; its cost is
  the subscribers of that room (a room nobody watches costs a dict lookup). Each subscriber
  has a buffer of ``buffer`` updates: one more and it is dropped, and its next read raises
  :class:`SlowConsumer` (the transports close it with ``SLOW_CONSUMER``), so a client that
  does not read holds a bounded amount of memory, then none.
- **Coherent reads**: what the feed is told also patches the session cache, so a
  ``Conference.session`` query sees an event at once.

The feed trusts its own state only while somebody watches the room (a source then keeps it
current); the room's last subscriber leaving forgets it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from gateway.errors import BadInputError, PbxUnavailableError
from gateway.pbx.sessions_query import ENDPOINT, LiveSession
from gateway.session_cache import Admit, SessionCache

logger = logging.getLogger(__name__)

DEFAULT_BUFFER = 64
DEFAULT_MAX_ROOMS = 100


class UpdateReason(enum.Enum):
    """Why an update was sent."""

    INITIAL = "INITIAL"
    """The room's state when the subscription started."""
    CHANGED = "CHANGED"
    """The room changed (an event, a poll, a moderator's action)."""
    RESYNCED = "RESYNCED"
    """The room's state read after the event channel came back: it changed meanwhile."""


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    """One room's state for a subscriber."""

    number: str
    session: LiveSession | None
    """Who is in the room; None: nobody (or, with ``error``, unknown)."""
    reason: UpdateReason
    error: Exception | None = None
    """``INITIAL`` only: why the room's state could not be read (then ``session`` is None)."""
    shared: dict[object, object] = field(default_factory=dict, compare=False, repr=False)
    """What the subscribers of this update computed once for all of them (the schema's
    executions per selection, :mod:`gateway.schema.shared_updates`): one object is sent
    to every subscriber of the room."""


class SlowConsumer(Exception):
    """The subscriber did not read fast enough: its buffer overflowed and it was dropped."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the subscriber fell {limit} updates behind (GATEWAY_LIVE_BUFFER) and was "
            "dropped; subscribe again to get the current state"
        )
        self.limit = limit


def same_state(a: LiveSession | None, b: LiveSession | None) -> bool:
    """Whether a subscriber would see no difference: nobody in both, or the same members."""
    if a is None or b is None:
        return a is b
    return a.members == b.members


class _Room:
    """A watched room: its subscribers and the last state sent to them (if any)."""

    __slots__ = ("known", "state", "subscribers")

    def __init__(self) -> None:
        self.known = False  # False: nothing sent yet, or the last read failed
        self.state: LiveSession | None = None
        self.subscribers: set[Subscription] = set()


class LiveFeed:
    """The subscribers of this process and the last state of each room they watch."""

    def __init__(
        self,
        cache: SessionCache,
        *,
        buffer: int = DEFAULT_BUFFER,
        max_rooms: int = DEFAULT_MAX_ROOMS,
        read_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``read_timeout``: seconds a subscription's first read may wait for the PBX
        (the request deadline); ``clock``: the session cache's."""
        if buffer < 1 or max_rooms < 1:
            raise ValueError("buffer and max_rooms must be at least 1")
        self.cache = cache
        self.buffer = buffer
        self.max_rooms = max_rooms
        self._read_timeout = read_timeout
        self._clock = clock
        self._rooms: dict[str, _Room] = {}
        self._subscriptions: set[Subscription] = set()
        self._refreshes: set[asyncio.Task[None]] = set()
        self._closed = False
        # Counters /metrics reads (gateway.observability.runtime_metrics).
        self.updates_sent = 0
        self.slow_consumers = 0

    @property
    def subscribers(self) -> int:
        """Subscriptions open now."""
        return len(self._subscriptions)

    @property
    def closed(self) -> bool:
        """Whether :meth:`stop` ran (the app is stopping)."""
        return self._closed

    # --- subscribers ------------------------------------------------------------------------

    def subscribe(self, numbers: Iterable[str], *, admit: Admit | None = None) -> Subscription:
        """A subscription to ``numbers`` (validated room numbers; duplicates once).

        It is watching at once (changes from now on are not missed); its first read yields
        the rooms' current states, bounded by ``read_timeout`` and charged to ``admit`` (the
        caller's budget of PBX fetches) like a request's. BadInputError beyond ``max_rooms``.
        """
        wanted = tuple(dict.fromkeys(numbers))
        if len(wanted) > self.max_rooms:
            raise BadInputError(
                f"a subscription may watch at most {self.max_rooms} rooms "
                f"(GATEWAY_LIVE_MAX_ROOMS); this one asks for {len(wanted)}: split it"
            )
        subscription = Subscription(self, wanted, admit=admit)
        if self._closed:
            subscription._end()  # ends at once: the app is stopping
            return subscription
        self._subscriptions.add(subscription)
        for number in wanted:
            room = self._rooms.get(number)
            if room is None:
                room = self._rooms[number] = _Room()
            room.subscribers.add(subscription)
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        for number in subscription.numbers:
            room = self._rooms.get(number)
            if room is None:
                continue
            room.subscribers.discard(subscription)
            if not room.subscribers:
                del self._rooms[number]  # nobody watches it: what we knew goes stale

    async def _initial(self, subscription: Subscription) -> list[SessionUpdate]:
        """One INITIAL update per room of ``subscription``: the feed's state, else the
        session cache's (one shared read for every room the feed does not know)."""
        unknown = [n for n in subscription.numbers if not self._room(n).known]
        read: dict[str, LiveSession | BaseException | None] = {}
        if unknown:
            found = await self._read(unknown, subscription)
            if found is None:
                return []  # it ended while waiting
            read = dict(zip(unknown, found, strict=True))
        updates: list[SessionUpdate] = []
        for number in subscription.numbers:
            room = self._room(number)
            if number in read and not room.known:  # nobody told us meanwhile
                state = read[number]
                if isinstance(state, Exception):
                    updates.append(SessionUpdate(number, None, UpdateReason.INITIAL, state))
                    continue
                if isinstance(state, BaseException):
                    raise state
                # Subscribers that got an error for this room learn its state now.
                self._learn(number, state, UpdateReason.CHANGED)
            updates.append(SessionUpdate(number, room.state, UpdateReason.INITIAL))
        return updates

    async def _read(
        self, numbers: list[str], subscription: Subscription
    ) -> list[LiveSession | BaseException | None] | None:
        """The session cache's states of ``numbers``; None when ``subscription`` ended
        first (closed, or the app stopping: it does not wait for the PBX to answer)."""
        reading = asyncio.ensure_future(
            self.cache.get_many(numbers, deadline=self.read_deadline(), admit=subscription.admit)
        )
        ended = asyncio.ensure_future(subscription._ended.wait())
        try:
            await asyncio.wait((reading, ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if not reading.done():
                reading.cancel()  # this wait only: the shared fetch goes on for the others
        if not reading.done():
            return None
        if reading.cancelled():  # the cache's fetch was cancelled: the app is stopping
            return [self._stopping_error() for _ in numbers]
        return reading.result()

    def read_deadline(self) -> float | None:
        """The clock value at which a read starting now gives up (None: never): a
        subscription's reads are bounded from when they start, not from when its
        connection opened."""
        return None if self._read_timeout is None else self._clock() + self._read_timeout

    def _room(self, number: str) -> _Room:
        # A subscriber's rooms exist while it is subscribed; after close(), an empty stand-in.
        return self._rooms.get(number) or _Room()

    @staticmethod
    def _stopping_error() -> PbxUnavailableError:
        return PbxUnavailableError(
            "the gateway is shutting down: who is in the room was not read", endpoint=ENDPOINT
        )

    # --- LiveSink: what sources tell ----------------------------------------------------------

    def room_changed(self, number: str, session: LiveSession | None) -> None:
        """Room ``number`` as the PBX just reported it (None: nobody is in it)."""
        self.cache.apply(number, session)
        self._learn(number, session, UpdateReason.CHANGED)

    def rooms_listed(
        self,
        listing: Mapping[str, LiveSession],
        rooms: Collection[str] | None = None,
        *,
        resync: bool = False,
    ) -> None:
        """A complete answer: each watched room of ``rooms`` (None: every watched room)
        is as ``listing`` says, nobody in it when left out."""
        self.cache.apply_listing(listing, rooms)
        reason = UpdateReason.RESYNCED if resync else UpdateReason.CHANGED
        watched = self._rooms.keys() if rooms is None else [n for n in rooms if n in self._rooms]
        for number in list(watched):
            self._learn(number, listing.get(number), reason)

    def watched_rooms(self) -> frozenset[str]:
        """The rooms somebody is subscribed to now."""
        return frozenset(self._rooms)

    def _learn(self, number: str, session: LiveSession | None, reason: UpdateReason) -> None:
        """Record ``number``'s new state and send it to the room's subscribers, unless they
        saw it already. Never awaits: cost is the room's subscribers."""
        room = self._rooms.get(number)
        if room is None:
            return  # nobody watches it: costs nothing
        if room.known and same_state(room.state, session):
            return
        room.known, room.state = True, session
        update = SessionUpdate(number, session, reason)
        dropped = [sub for sub in room.subscribers if not sub._push(update)]
        for subscription in dropped:
            self.slow_consumers += 1
            logger.warning(
                "a live subscriber fell %d updates behind and was dropped (GATEWAY_LIVE_BUFFER)",
                self.buffer,
            )
            self._remove(subscription)

    # --- moderator actions --------------------------------------------------------------------

    def refresh_soon(self, number: str) -> None:
        """A moderator just acted on room ``number``: read it again (one ``query_in_session``,
        shared with any read under way) and send what changed, without waiting for an event.
        Nothing when nobody watches the room. Runs in the background; errors are dropped
        (a source still tells the change, and the next read asks the PBX)."""
        if self._closed or number not in self._rooms:
            return
        # Now, not in the task: a read that starts after this point sees the action, and
        # the task joins it rather than asking again (one PBX call per action at most).
        self.cache.forget()
        task = asyncio.create_task(self._refresh(number))
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)

    async def _refresh(self, number: str) -> None:
        (state,) = await self.cache.get_many([number], deadline=self.read_deadline())
        if not isinstance(state, BaseException):
            self.rooms_listed({} if state is None else {number: state}, [number])

    async def settled(self) -> None:
        """Wait for the refreshes under way (tests; shutdown)."""
        while self._refreshes:
            await asyncio.gather(*self._refreshes, return_exceptions=True)

    # --- shutdown -----------------------------------------------------------------------------

    def stop(self) -> None:
        """End every subscription (each completes after what it has buffered) and refuse
        new ones: the app is stopping. Never awaits (the server calls it as it stops)."""
        self._closed = True
        for subscription in list(self._subscriptions):
            subscription._end()
        self._subscriptions.clear()
        self._rooms.clear()

    async def close(self) -> None:
        """:meth:`stop`, and cancel the refreshes under way (the lifespan's shutdown)."""
        self.stop()
        for task in list(self._refreshes):
            task.cancel()
        await asyncio.gather(*self._refreshes, return_exceptions=True)


class Subscription:
    """One subscriber's updates: an async iterator (and async context manager).

    Its first read yields one INITIAL update per room, then each change as it comes. It ends
    (StopAsyncIteration) after :meth:`aclose` or when the feed closes; raises
    :class:`SlowConsumer` at the next read once it fell ``buffer`` updates behind.
    """

    def __init__(
        self,
        feed: LiveFeed,
        numbers: Sequence[str],
        *,
        admit: Admit | None,
    ) -> None:
        self.numbers = tuple(numbers)
        self.admit = admit
        self._feed = feed
        self._limit = feed.buffer
        self._pending = True  # until the INITIAL updates are made: changes are not queued
        self._initial: deque[SessionUpdate] = deque()
        self._buffer: deque[SessionUpdate] = deque()
        self._closed = False
        self._overflowed = False
        self._wakeup = asyncio.Event()
        self._ended = asyncio.Event()  # set once: closed by the client or the feed

    @property
    def dropped(self) -> bool:
        """Whether it fell ``buffer`` updates behind and was dropped (its next read raises
        SlowConsumer)."""
        return self._overflowed

    @property
    def buffered(self) -> int:
        """Changes waiting to be read (never more than the feed's ``buffer``)."""
        return len(self._buffer)

    def _push(self, update: SessionUpdate) -> bool:
        """Queue ``update``; False when the buffer is full (the subscriber is then dropped,
        its buffer freed, and its next read raises SlowConsumer)."""
        if self._pending or self._closed:
            return True
        if len(self._buffer) >= self._limit:
            self._overflowed = True
            self._initial.clear()
            self._buffer.clear()
            self._end()
            return False
        self._buffer.append(update)
        self._wakeup.set()
        return True

    def _end(self) -> None:
        self._closed = True
        self._pending = False
        self._wakeup.set()
        self._ended.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> SessionUpdate:
        if self._pending and not self._closed:
            initial = await self._feed._initial(self)
            if self._pending:  # not ended meanwhile
                self._initial.extend(initial)
                self._pending = False
        while True:
            if self._overflowed:
                raise SlowConsumer(self._limit)
            update = (
                self._initial.popleft()
                if self._initial
                else self._buffer.popleft()
                if self._buffer
                else None
            )
            if update is not None:
                self._feed.updates_sent += 1
                return update
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()

    async def aclose(self) -> None:
        """Stop: the feed forgets this subscriber; a read after this ends the iteration."""
        self._pending = False
        self._initial.clear()
        self._buffer.clear()
        self._feed._remove(self)
        self._end()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
