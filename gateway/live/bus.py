"""The fleet's live bus: the lease holder's room states reach every replica's feed.

Only the replica holding the lease (:mod:`gateway.live.lease`) runs a source; its sink is
this :class:`BusSink`, which applies each state to its own feed at once and publishes it on
the Redis channel ``<prefix>live:changes``. Every replica runs :meth:`BusSink.listen`,
applying what the others publish to its own feed.

- **Sealed.** Messages carry who is in each room (numbers, channel ids): each is sealed
  with AES-GCM under the fleet key (:mod:`gateway.fleet.sealing`, the channel name as
  associated data). One that does not open (someone with Redis access but not the key),
  is older than ``MAX_AGE``, larger than ``MAX_MESSAGE_BYTES`` or of another shape is
  dropped, counted in ``dropped`` and logged once per kind: nobody can inject members.
- **Ordered, fenced.** Each message carries the lease *term* it was sent under and a
  sequence number within it. A replica applies only messages past the last it applied:
  a former holder's late messages (lower term) and replays are dropped.
- **Resync by asking the holder.** A replica that may have missed messages (its pub/sub
  connection was re-subscribed, or a sequence number was skipped) publishes a sealed
  resync request naming the rooms its subscribers watch; the holder answers with one
  listing of those rooms from the state its source last reported (no PBX call), addressed
  to the asker, in the same ordered stream, so no later change can be overtaken by it.
  Chosen over a snapshot in Redis: the answer is ordered with the changes (a snapshot
  read beside the stream can overwrite a newer change with an older state).
- **Watched rooms of the whole fleet** (:mod:`gateway.live.fleet_watch`):
  :meth:`BusSink.watched_rooms` is this replica's and every other's, so the holder's
  poller and reconciliation ask for what the whole fleet watches.

With Redis unreachable nothing is published or heard (the lease is lost then as well);
when it is back, the re-subscription asks for a resync.

Why over 300 lines: publishing, hearing, ordering and resync are one protocol over one
channel; each step's race with the others is explained where it happens.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

from redis.exceptions import RedisError

from gateway.fleet.cancelled import stop_if_cancelled
from gateway.fleet.link import RedisLink
from gateway.fleet.sealing import Sealer
from gateway.live.channel import subscribed
from gateway.live.contracts import LiveSink
from gateway.live.fleet_watch import FleetWatch
from gateway.live.wire import (
    Unreadable,
    plain_listing,
    plain_session,
    read_listing,
    read_rooms,
    read_session,
)
from gateway.pbx.sessions_query import LiveSession

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
"""Larger messages are dropped unread (a listing of every room is far smaller)."""
MAX_AGE: Final = 30.0
"""Seconds a message may be old when heard (its seal dates it); older ones are replays."""
MAX_ROOMS: Final = 10_000
"""Rooms one resync request may name."""
OUTBOX: Final = 10_000
"""Messages waiting to be published; past it the oldest go (receivers see the gap)."""
BATCH: Final = 100
PING_EVERY: Final = 5.0
"""An idle subscription is pinged this often; no answer by the next ping: reconnect."""

Term = Callable[[], int | None]


class BusSink:
    """The fleet's :class:`~gateway.live.contracts.LiveSink`; see the module docstring.

    ``local`` is this replica's feed; ``term`` answers the lease's current term (None when
    not holding: a source still running then is fenced, and nothing it says is used).
    """

    def __init__(
        self,
        link: RedisLink,
        sealer: Sealer,
        local: LiveSink,
        *,
        term: Term,
        replica: str | None = None,
        watch_ttl: float = 15.0,
        watch_refresh: float = 1.0,
    ) -> None:
        self._link = link
        self._sealer = sealer
        self._local = local
        self._term = term
        self.replica = replica or uuid.uuid4().hex[:12]
        self.channel = link.key("live", "changes")
        self.watch = FleetWatch(
            link, sealer, local, replica=self.replica, ttl=watch_ttl, refresh=watch_refresh
        )
        # Publishing (the holder).
        self._outbox: collections.deque[dict[str, Any]] = collections.deque()
        self._wake = asyncio.Event()
        self._sent_term: int | None = None
        self._seq = 0
        # The holder's view of the rooms in this term, to answer resync requests.
        self._rooms: dict[str, LiveSession] = {}
        self._known: set[str] = set()
        self._all_known = False
        # Hearing (every replica).
        self._last: tuple[int, int] = (0, 0)
        self._resync_wanted = False
        self._warned: set[str] = set()
        self.published = 0
        self.unsent = 0
        self.applied = 0
        self.dropped: collections.Counter[str] = collections.Counter()
        self.gaps = 0
        self.resyncs_asked = 0
        self.resyncs_answered = 0
        self.requests_heard = 0
        self.subscriptions = 0

    # --- the sink the holder's source writes to -------------------------------------------

    def room_changed(self, number: str, session: LiveSession | None) -> None:
        term = self._holding()
        if term is None:
            return
        self._local.room_changed(number, session)
        self._known.add(number)
        self._set_room(number, session)
        self._post(term, {"op": "changed", "number": number, "session": plain_session(session)})

    def rooms_listed(
        self,
        listing: Mapping[str, LiveSession],
        rooms: Collection[str] | None = None,
        *,
        resync: bool = False,
    ) -> None:
        term = self._holding()
        if term is None:
            return
        self._local.rooms_listed(listing, rooms, resync=resync)
        if rooms is None:
            self._rooms, self._all_known = dict(listing), True
        else:
            for number in rooms:
                self._set_room(number, listing.get(number))
            self._known.update(rooms)
        listed = dict(listing)
        self._post(
            term,
            {
                "op": "listed",
                "listing": plain_listing(listed),
                "rooms": None if rooms is None else sorted(rooms),
                "resync": resync,
            },
        )

    def watched_rooms(self) -> frozenset[str]:
        """What this replica's subscribers watch, and what every other replica's do."""
        return self._local.watched_rooms() | self.watch.others

    def _holding(self) -> int | None:
        """The current term if this replica holds the lease (a new term starts afresh)."""
        term = self._term()
        if term is None:
            self.dropped["fenced"] += 1  # a source outliving its lease: never heard
            return None
        if term != self._sent_term:
            self._sent_term, self._seq = term, 0
            self._rooms, self._known, self._all_known = {}, set(), False
        return term

    def _set_room(self, number: str, session: LiveSession | None) -> None:
        if session is None:
            self._rooms.pop(number, None)
        else:
            self._rooms[number] = session

    def _post(self, term: int, body: dict[str, Any]) -> None:
        self._seq += 1
        body.update(origin=self.replica, term=term, seq=self._seq)
        self._last = max(self._last, (term, self._seq))  # ours: older terms are now stale
        if len(self._outbox) >= OUTBOX:
            self._outbox.popleft()  # Redis is slow or gone; the receivers see the gap
            self.dropped["outbox_full"] += 1
        self._outbox.append(body)
        self._wake.set()

    # --- every replica --------------------------------------------------------------------

    async def listen(self) -> None:
        """Hear the fleet's messages into the local feed, publish this replica's, and keep
        the fleet's watched rooms; until cancelled."""
        tasks = [
            asyncio.create_task(self._hear_forever(), name="live bus: hear"),
            asyncio.create_task(self._publish_forever(), name="live bus: publish"),
            asyncio.create_task(self.watch.run(), name="live bus: watched rooms"),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _hear_forever(self) -> None:
        delay, lost = 0.2, False
        while True:
            try:
                async with subscribed(self._link, self.channel) as pubsub:
                    delay, lost = 0.2, False
                    self._subscribed()
                    await self._hear(pubsub)
            except (RedisError, OSError, TimeoutError) as exc:
                stop_if_cancelled()
                if not lost:
                    lost = True
                    logger.warning(
                        "live bus: the Redis subscription dropped (%s); live changes from "
                        "other replicas resume (with a resync) when it is back",
                        type(exc).__name__,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _subscribed(self) -> None:
        """(Re)subscribed: what was published meanwhile is lost to us; ask for it."""
        self.subscriptions += 1
        self._ask_resync()

    async def _hear(self, pubsub: Any) -> None:
        pinged_at = time.monotonic()
        ponged = True
        while True:
            message = await pubsub.get_message(timeout=1.0)
            stop_if_cancelled()
            if message is not None:
                kind = message.get("type")
                if kind == "message":
                    self._heard(message.get("data"))
                elif kind == "subscribe":
                    # The client reconnected and re-subscribed by itself: same as above.
                    self._subscribed()
                elif kind == "pong":
                    ponged = True
                continue
            if time.monotonic() - pinged_at >= PING_EVERY:
                if not ponged:
                    raise TimeoutError("the Redis subscription stopped answering pings")
                ponged, pinged_at = False, time.monotonic()
                await pubsub.ping()

    def _heard(self, data: object) -> None:
        if not isinstance(data, bytes) or len(data) > MAX_MESSAGE_BYTES:
            self._drop("size", "a message that is not sealed bytes of a bounded size")
            return
        opened = self._sealer.open(self.channel, data, max_age=MAX_AGE)
        if opened is None:  # Sealer logged it (once per kind) and counted it
            self.dropped["unsealed"] += 1
            return
        body = opened[0]
        try:
            self._apply(body)
        except (Unreadable, KeyError, TypeError, ValueError):
            self._drop("shape", "a message of a shape this gateway does not write")

    def _apply(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise Unreadable("a message that is not an object")
        origin = body["origin"]
        if origin == self.replica:
            return  # our own: already applied locally when sent
        op = body["op"]
        if op == "resync":
            self.requests_heard += 1
            self._answer(str(origin), read_rooms(body["rooms"], limit=MAX_ROOMS))
            return
        term, seq = body["term"], body["seq"]
        if not isinstance(term, int) or not isinstance(seq, int) or op not in _STATES:
            raise Unreadable("a message without a term and sequence")
        if (term, seq) <= self._last:
            self.dropped["stale"] += 1  # a former holder's, or a replay
            return
        last_term, last_seq = self._last
        if seq != (last_seq + 1 if term == last_term else 1):
            self.gaps += 1  # messages before this one were missed: ask for the state
            self._ask_resync()
        to = body.get("to")
        if to is not None and to != self.replica:
            self._last = (term, seq)  # another replica's resync answer: seen, not ours
            return
        if op == "changed":
            number = body["number"]
            session = read_session(body["session"])
            if not isinstance(number, str) or (session is not None and session.number != number):
                raise Unreadable("a change for another room")
            self._last = (term, seq)
            self._local.room_changed(number, session)
        else:
            listing = read_listing(body["listing"])
            rooms = read_rooms(body["rooms"], limit=MAX_ROOMS + len(listing))
            resync = body.get("resync", False)
            if not isinstance(resync, bool):
                raise Unreadable("a resync flag that is not a boolean")
            self._last = (term, seq)
            self._local.rooms_listed(listing, rooms, resync=resync)
        self.applied += 1

    def _ask_resync(self) -> None:
        self._resync_wanted = True
        self._wake.set()

    def _answer(self, asker: str, rooms: list[str] | None) -> None:
        """A resync request: the asked rooms this holder knows, in the ordered stream."""
        term = self._term()
        if term is None or term != self._sent_term:
            return  # not the holder (or no state yet in this term): the holder answers
        if rooms is None:  # every room this holder knows of
            known = set(self._rooms) | self._known
        else:
            known = set(rooms) if self._all_known else set(rooms) & self._known
        if not known:
            return
        self.resyncs_answered += 1
        listing = {n: self._rooms[n] for n in known if n in self._rooms}
        self._post(
            term,
            {
                "op": "listed",
                "listing": plain_listing(listing),
                "rooms": sorted(known),
                "resync": True,  # the asker missed changes: its subscribers see RESYNCED
                "to": asker,
            },
        )

    def _drop(self, kind: str, why: str) -> None:
        self.dropped[kind] += 1
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning(
                "live bus: dropped %s on %s (further ones are counted, not logged)",
                why,
                self.channel,
            )

    # --- publishing -----------------------------------------------------------------------

    async def _publish_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._resync_wanted:
                self._resync_wanted = False
                await self._send_request()
                stop_if_cancelled()
            while self._outbox:
                batch = [self._outbox.popleft() for _ in range(min(BATCH, len(self._outbox)))]
                sent = await self._send([self._seal(body) for body in batch])
                stop_if_cancelled()
                self.published += sent
                # Redis down: lost; the receivers see the gap in the sequence and ask again.
                self.unsent += len(batch) - sent

    async def _send_request(self) -> None:
        watched = sorted(self._local.watched_rooms())[:MAX_ROOMS]
        if not watched:
            return  # nobody here watches anything: nothing to catch up on
        self.resyncs_asked += 1
        await self._send([self._seal({"op": "resync", "origin": self.replica, "rooms": watched})])

    def _seal(self, body: dict[str, Any]) -> bytes:
        return self._sealer.seal(self.channel, body, time.time())

    async def _send(self, blobs: list[bytes]) -> int:
        """Publish ``blobs`` in one round trip; how many went (0: Redis is down)."""

        async def publish(client: Any) -> int:
            async with client.pipeline(transaction=False) as pipe:
                for blob in blobs:
                    pipe.publish(self.channel, blob)
                await pipe.execute()
            return len(blobs)

        return await self._link.run(publish, 0)


_STATES: Final = ("changed", "listed")
