"""The conference cache shared by the fleet, under each replica's own in-memory store.

Each replica keeps its fast in-process store (:mod:`gateway.store`); this tier sits
between it and the PBX, so that

- a room any replica fetched is served by every other one, with its true age (entries
  hold the wall-clock time of the fetch; Redis keeps a room for the stale TTL, "no such
  room" for the fresh TTL only);
- entries and the listing are sealed (:mod:`gateway.fleet.sealing`): encrypted, so a Redis
  reader sees no PIN, and authenticated with their time, so an altered, moved or
  post-dated entry is refused and counts as a miss;
- a room nobody has is fetched by one replica for the fleet: each number is claimed with
  ``SET NX PX`` (a lock that expires, so a replica that dies while holding it blocks the
  others at most until then); the others poll for the result, boundedly, and fetch for
  themselves only if the holder's lock went away with no answer;
- when the PBX cannot answer, copies other replicas fetched are there to serve stale;
- a room changed through any replica is dropped everywhere: deleted in Redis and
  announced on a channel every replica listens to.

With Redis down every method falls back to "nothing shared" and the replica works alone.

Why over 300 lines: reading, claiming, fetching for the fleet, waiting for another
replica's fetch and sealing are one protocol over the same keys; each step's race with
the others is explained where it happens.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from gateway import conference_codec as codec
from gateway.fleet.cancelled import stop_if_cancelled
from gateway.fleet.link import RedisLink, script
from gateway.fleet.sealing import Sealer
from gateway.pbx.conferences import Conference, Room, UnreadableRoom, in_order

logger = logging.getLogger(__name__)

Fetch = Callable[[list[str]], Awaitable[Mapping[str, Room]]]

_RELEASE: Final = """
local released = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    released = released + 1
  end
end
return released
"""

LISTING: Final = codec.ALL

# Writes that keep to what was true when their fetch began: KEYS are n entry keys then
# their n version keys; ARGV is n, then per entry (blob, seconds, version seen before the
# fetch). An entry whose room was changed (forget bumped its version) meanwhile is not
# written: it may hold the old value.
_WRITE_IF_UNCHANGED: Final = """
local n = tonumber(ARGV[1])
local written = 0
for i = 1, n do
  local seen = ARGV[1 + (i - 1) * 3 + 3]
  local now = redis.call('GET', KEYS[n + i]) or ''
  if now == seen then
    redis.call('SET', KEYS[i], ARGV[1 + (i - 1) * 3 + 1], 'EX', ARGV[1 + (i - 1) * 3 + 2])
    written = written + 1
  end
end
return written
"""


class SharedCache:
    """The fleet tier: read, claim, fetch-or-wait, write; see the module docstring."""

    def __init__(
        self,
        link: RedisLink,
        *,
        ttl: float,
        stale_ttl: float,
        claim_seconds: float,
        wait_seconds: float,
        sealer: Sealer,
    ) -> None:
        self._link = link
        self.sealer = sealer
        self._ttl = ttl
        self._keep_seconds = max(1, int(max(stale_ttl, ttl)))
        self._unknown_seconds = max(1, int(ttl))
        self._claim_ms = int(claim_seconds * 1000)
        self._wait_seconds = wait_seconds
        self.channel = link.key("invalidate")
        self._replica = uuid.uuid4().hex[:12]  # to skip our own announcements
        self.shared_hits = 0
        self.waited_for_others = 0

    def _entry_key(self, number: str) -> str:
        return self._link.key("conf", number)

    def _claim_key(self, number: str) -> str:
        return self._link.key("claim", number)

    async def read(self, numbers: Sequence[str]) -> dict[str, tuple[Room | None, float]]:
        """What Redis holds for ``numbers``: (room or None, age in seconds)."""
        if not numbers:
            return {}
        blobs = await self._mget([self._entry_key(n) for n in numbers])
        now = time.time()
        found: dict[str, tuple[Room | None, float]] = {}
        for number, blob in zip(numbers, blobs, strict=True):
            decoded = self._decode(self._entry_key(number), blob)
            if decoded is not None:
                conference, fetched_at = decoded
                found[number] = (conference, max(0.0, now - fetched_at))
        return found

    async def load(self, numbers: list[str], fetch: Fetch) -> dict[str, tuple[Room | None, float]]:
        """Every number's answer with its age: from Redis if fresh there, else fetched by
        this replica or by whichever replica claimed it first."""
        answers = {n: a for n, a in (await self.read(numbers)).items() if a[1] < self._ttl}
        self.shared_hits += len(answers)
        pending = [n for n in numbers if n not in answers]
        for _ in range(2):  # a second round only if a holder vanished without answering
            if not pending:
                break
            owner, mine, theirs = await self._claim(pending)
            if mine:
                answers.update(await self._fetch_and_share(owner, mine, fetch))
            if theirs:
                self.waited_for_others += len(theirs)
                answers.update(await self._wait_for(theirs))
            pending = [n for n in theirs if n not in answers]
        if pending:  # holders keep failing or hanging: this replica asks the PBX itself
            answers.update({n: (c, 0.0) for n, c in (await self._fetched(pending, fetch)).items()})
            answers.update({n: (None, 0.0) for n in pending if n not in answers})
        return answers

    async def stale_copies(self, numbers: Sequence[str]) -> dict[str, tuple[Conference, float]]:
        """Rooms other replicas fetched, whatever their age (to serve stale)."""
        return {
            n: (c, age)
            for n, (c, age) in (await self.read(numbers)).items()
            if isinstance(c, Conference)  # never "no such room" or an unreadable one
        }

    async def versions(self, numbers: Sequence[str]) -> dict[str, str]:
        """Each room's change counter (bumped by :meth:`forget`), read before a fetch."""
        raw = await self._mget([self._version_key(n) for n in numbers])
        return {n: (v.decode() if v else "") for n, v in zip(numbers, raw, strict=True)}

    async def write(
        self,
        answers: dict[str, Room | None],
        fetched_at: float,
        seen: dict[str, str] | None = None,
    ) -> None:
        """Share fresh answers: rooms for the stale TTL, "no such room" for the fresh TTL;
        with ``seen`` (versions read before the fetch), only rooms not changed since."""
        if not answers:
            return
        numbers = list(answers)
        if seen is None:  # nothing to compare with: take the versions as they are now
            seen = await self.versions(numbers)
        keys = [self._entry_key(n) for n in numbers] + [self._version_key(n) for n in numbers]
        args: list[Any] = [len(numbers)]
        for number in numbers:
            conference = answers[number]
            seconds = self._unknown_seconds if conference is None else self._keep_seconds
            blob = self.sealer.seal(
                self._entry_key(number),
                None if conference is None else _plain(conference),
                fetched_at,
            )
            args += [blob, seconds, seen.get(number, "")]
        await script(self._link, _WRITE_IF_UNCHANGED, keys, args, 0)

    def _version_key(self, number: str) -> str:
        return self._link.key("ver", number)

    async def forget(self, number: str) -> None:
        """Drop ``number`` everywhere: its entry, the listing, and every replica's copy."""

        async def drop(client: Any) -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.incr(self._version_key(number))  # fetches begun before: do not write
                pipe.expire(self._version_key(number), self._keep_seconds)
                pipe.delete(self._entry_key(number), self._link.key("listing"))
                pipe.publish(self.channel, f"{self._replica} {number}")
                await pipe.execute()

        await self._link.run(drop, None)

    async def read_listing(self) -> tuple[list[Room], float] | None:
        """The fleet's ``all`` listing and its age, if Redis holds one."""
        key = self._link.key("listing")
        blob = (await self._mget([key]))[0]
        if not blob:
            return None
        opened = self.sealer.open(key, blob, max_age=self._keep_seconds)
        if opened is None:
            return None
        data, fetched_at = opened
        try:
            rooms = [_conference(item) for item in data]
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # sealed by the fleet, so another version's shape: treat as absent
        return rooms, max(0.0, time.time() - fetched_at)

    async def write_listing(self, conferences: Iterable[Room], fetched_at: float) -> None:
        rooms = list(conferences)
        key = self._link.key("listing")
        blob = self.sealer.seal(key, [_plain(c) for c in rooms], fetched_at)
        await self._link.run(lambda client: client.set(key, blob, ex=self._keep_seconds), None)
        await self.write({c.number: c for c in rooms if c.number is not None}, fetched_at)

    async def load_listing(
        self, fetch_all: Callable[[], Awaitable[Mapping[str, Room]]]
    ) -> tuple[list[Room], float]:
        """The ``all`` listing with its age: Redis's if fresh, else fetched once for the
        fleet (claimed like a number; the others wait for it)."""
        for _ in range(2):
            held = await self.read_listing()
            if held is not None and held[1] < self._ttl:
                self.shared_hits += 1
                return held
            owner, mine, _theirs = await self._claim([LISTING])
            if mine:
                try:
                    rooms = in_order(await fetch_all())
                    await self.write_listing(rooms, time.time())
                    return rooms, 0.0
                finally:
                    await script(self._link, _RELEASE, [self._claim_key(LISTING)], [owner], 0)
            self.waited_for_others += 1
            give_up = time.monotonic() + self._wait_seconds
            delay = 0.01
            while time.monotonic() < give_up:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)
                held = await self.read_listing()
                if held is not None and held[1] < self._ttl:
                    return held
                if (await self._mget([self._claim_key(LISTING)]))[0] is None:
                    break  # the holder failed: try to claim it ourselves
        rooms = in_order(await fetch_all())
        await self.write_listing(rooms, time.time())
        return rooms, 0.0

    async def listen(self, on_forget: Callable[[str], None]) -> None:
        """Apply every replica's ``forget`` here too; reconnects while Redis comes and goes."""
        while True:
            stop_if_cancelled()  # redis-py may have swallowed the cancel (its connection error)
            if not self._link.up:
                await asyncio.sleep(0.5)
                continue
            try:
                async with self._link.client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    async for message in pubsub.listen():
                        stop_if_cancelled()
                        if message.get("type") == "message":
                            data = message.get("data")
                            text = data.decode() if isinstance(data, bytes) else str(data)
                            origin, _, number = text.partition(" ")
                            if origin != self._replica and number:
                                on_forget(number)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis went away mid-subscription: retry when back
                logger.debug("invalidation channel lost (%s)", type(exc).__name__)
                await asyncio.sleep(0.5)

    async def _claim(self, numbers: list[str]) -> tuple[str, list[str], list[str]]:
        """Claim what nobody else is fetching: (claim owner id, claimed, held by others)."""
        owner = uuid.uuid4().hex

        async def claim(client: Any) -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                for number in numbers:
                    pipe.set(self._claim_key(number), owner, nx=True, px=self._claim_ms)
                result: list[Any] = await pipe.execute()
                return result

        won = await self._link.run(claim, [True] * len(numbers))  # Redis down: all ours
        mine = [n for n, ok in zip(numbers, won, strict=True) if ok]
        return owner, mine, [n for n, ok in zip(numbers, won, strict=True) if not ok]

    async def _fetch_and_share(
        self, owner: str, numbers: list[str], fetch: Fetch
    ) -> dict[str, tuple[Room | None, float]]:
        try:
            # Read again now that the claims are ours: another replica may have fetched and
            # shared these between our first read and our claim (its claim already gone).
            shared = {n: a for n, a in (await self.read(numbers)).items() if a[1] < self._ttl}
            numbers_left = [n for n in numbers if n not in shared]
            if not numbers_left:
                return shared
            seen = await self.versions(numbers_left)
            found = await self._fetched(numbers_left, fetch)
            answers: dict[str, Room | None] = {n: found.get(n) for n in numbers_left}
            await self.write(answers, time.time(), seen)
            return {**shared, **{n: (c, 0.0) for n, c in answers.items()}}
        finally:
            keys = [self._claim_key(n) for n in numbers]
            await script(self._link, _RELEASE, keys, [owner], 0)

    @staticmethod
    async def _fetched(numbers: list[str], fetch: Fetch) -> dict[str, Room]:
        return dict(await fetch(numbers))

    async def _wait_for(self, numbers: list[str]) -> dict[str, tuple[Room | None, float]]:
        """Poll for answers the claiming replicas are fetching; stop when each has one or
        its claim is gone (the holder failed or died)."""
        give_up = time.monotonic() + self._wait_seconds
        answers: dict[str, tuple[Room | None, float]] = {}
        waiting = list(numbers)
        delay = 0.01
        while waiting and time.monotonic() < give_up:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
            fresh = {n: a for n, a in (await self.read(waiting)).items() if a[1] < self._ttl}
            answers.update(fresh)
            waiting = [n for n in waiting if n not in fresh]
            if waiting:
                held = await self._mget([self._claim_key(n) for n in waiting])
                waiting = [n for n, h in zip(waiting, held, strict=True) if h is not None]
        return answers

    def _decode(self, key: str, blob: bytes | None) -> tuple[Room | None, float] | None:
        if not blob:
            return None
        opened = self.sealer.open(key, blob, max_age=self._keep_seconds)
        if opened is None:
            return None
        room, fetched_at = opened
        try:
            return (None if room is None else _conference(room)), fetched_at
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # sealed by the fleet, so another version's shape: treat as absent

    async def _mget(self, keys: list[str]) -> list[bytes | None]:
        async def get(client: Any) -> list[bytes | None]:
            values: list[bytes | None] = await client.mget(keys)
            return values

        return await self._link.run(get, [None] * len(keys))


def _plain(conference: Room) -> dict[str, Any]:
    if isinstance(conference, UnreadableRoom):
        return {
            "unreadable": conference.reason,
            "number": conference.number,
            "endpoint": conference.endpoint,
        }
    plain = {f.attribute: codec.to_plain(f, getattr(conference, f.attribute)) for f in codec.FIELDS}
    plain["unreported"] = sorted(conference.unreported)
    return plain


def _conference(data: dict[str, Any]) -> Room:
    if "unreadable" in data:
        return UnreadableRoom(data.get("number"), str(data["unreadable"]), str(data["endpoint"]))
    settings = {f.attribute: codec.from_plain(f, data.get(f.attribute)) for f in codec.SETTINGS}
    return Conference(
        number=str(data["number"]),
        name=str(data["name"]),
        unreported=frozenset(data.get("unreported", ())),
        **settings,
    )
