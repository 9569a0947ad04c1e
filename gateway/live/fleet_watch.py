"""The rooms the whole fleet watches, so the lease holder's source asks for all of them.

A poller (and the event source's reconciliation) asks the PBX only for the rooms somebody
watches; in a fleet those subscribers are spread over the replicas. Each replica writes the
rooms its own subscribers watch into the hash ``<prefix>live:watch``, under its own id:

- **sealed** (:mod:`gateway.fleet.sealing`, the hash and field as associated data), so an
  entry written by someone without the fleet key, or moved to another replica's field, is
  ignored and removed, and cannot make the holder poll rooms nobody watches;
- **written** within ``refresh`` seconds of a change and every ``ttl/3`` seconds besides;
  an entry older than ``ttl`` belongs to a replica that is gone (crashed: it could not say
  so) and is removed; the hash itself expires ``ttl`` after the last write;
- **read** every ``refresh`` seconds: :attr:`FleetWatch.others` is the union of every
  other replica's rooms, which the bus adds to this replica's own.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

from gateway.fleet.cancelled import stop_if_cancelled
from gateway.fleet.link import RedisLink
from gateway.fleet.sealing import Sealer
from gateway.live.contracts import LiveSink
from gateway.live.wire import Unreadable, read_rooms

MAX_ROOMS: Final = 10_000
"""Rooms one replica's entry may name."""
SEAL_AGE: Final = 86_400.0
"""The seal's own age bound; ``ttl`` decides, silently (an entry expiring is no attack)."""


class FleetWatch:
    """Writes this replica's watched rooms and reads the others'; see the module docstring."""

    def __init__(
        self,
        link: RedisLink,
        sealer: Sealer,
        local: LiveSink,
        *,
        replica: str,
        ttl: float = 15.0,
        refresh: float = 1.0,
    ) -> None:
        self._link = link
        self._sealer = sealer
        self._local = local
        self._replica = replica
        self.key = link.key("live", "watch")
        self._ttl = ttl
        self._refresh = refresh
        self.others: frozenset[str] = frozenset()
        """The rooms every other live replica's subscribers watch (as last read)."""

    async def run(self) -> None:
        """Write and read every ``refresh`` seconds, until cancelled."""
        written: frozenset[str] | None = None
        written_at = 0.0
        while True:
            mine = self._local.watched_rooms()
            due = mine != written or time.monotonic() - written_at >= self._ttl / 3
            if due and await self._write(mine):
                written, written_at = mine, time.monotonic()
            self.others = await self._read()
            stop_if_cancelled()
            await asyncio.sleep(self._refresh)

    async def _write(self, rooms: frozenset[str]) -> bool:
        field = self._replica
        blob = self._sealer.seal(self._name(field), sorted(rooms)[:MAX_ROOMS], time.time())
        ttl_ms = int(self._ttl * 1000)

        async def write(client: Any) -> bool:
            async with client.pipeline(transaction=True) as pipe:
                if rooms:
                    pipe.hset(self.key, field, blob)
                else:
                    pipe.hdel(self.key, field)
                pipe.pexpire(self.key, ttl_ms)
                await pipe.execute()
            return True

        return await self._link.run(write, False)

    async def _read(self) -> frozenset[str]:
        """Every other replica's watched rooms; entries past ``ttl`` or not sealed by the
        fleet are removed."""

        async def read(client: Any) -> dict[bytes, bytes]:
            entries: dict[bytes, bytes] = await client.hgetall(self.key)
            return entries

        none: dict[bytes, bytes] = {}
        entries = await self._link.run(read, none)
        rooms: set[str] = set()
        gone: list[bytes] = []
        now = time.time()
        for raw_field, blob in entries.items():
            field = raw_field.decode(errors="replace")
            if field == self._replica:
                continue
            opened = self._sealer.open(self._name(field), blob, max_age=SEAL_AGE)
            if opened is None or now - opened[1] > self._ttl:
                gone.append(raw_field)
                continue
            try:
                rooms.update(read_rooms(opened[0], limit=MAX_ROOMS) or ())
            except Unreadable:
                gone.append(raw_field)
        if gone:
            await self._link.run(lambda client: client.hdel(self.key, *gone), 0)
        return frozenset(rooms)

    def _name(self, field: str) -> str:
        """The associated data of one replica's entry: moved to another field, it fails."""
        return f"{self.key}:{field}"
