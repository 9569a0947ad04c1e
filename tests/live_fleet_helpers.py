"""Pieces for the live-fleet tests: a Redis cable a test can cut, sources and a sink to watch.

All real: the cable is a TCP relay in front of a real ``redis-server`` (cut: every
connection closed and new ones refused, as a crashed network; stalled: bytes stop
flowing, as a partition); the sources and the sink are the simplest implementations of
the contracts, counting what happened to them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection, Mapping

from gateway.conference_codec import ALL
from gateway.fleet.link import RedisLink
from gateway.live.contracts import LiveSink
from gateway.pbx.session import PbxSession
from gateway.pbx.sessions_query import LiveSession, query_in_session
from gateway.secrets import Secret


class Cable:
    """A TCP relay to Redis on loopback: :meth:`cut`, :meth:`stall` and :meth:`mend` it."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._refusing = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        """Close every connection and refuse new ones."""
        self._refusing = True
        self._flowing.set()
        for writer in list(self._writers):
            writer.transport.abort()

    def stall(self) -> None:
        """Keep the connections but carry no more bytes (a partition: nothing answers)."""
        self._flowing.clear()

    def mend(self) -> None:
        self._refusing = False
        self._flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            self._writers.difference_update((writer, up_writer))
            for w in (writer, up_writer):
                w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


@contextlib.asynccontextmanager
async def cable_to(port: int) -> AsyncIterator[Cable]:
    cable = Cable(port)
    await cable.start()
    try:
        yield cable
    finally:
        await cable.close()


@contextlib.asynccontextmanager
async def redis_link(url: str, *, slow: float = 2.0) -> AsyncIterator[RedisLink]:
    """A started :class:`RedisLink` (one replica's connection; ``slow``: its Redis
    timeout), closed on exit."""
    link = RedisLink(Secret(url), timeout=slow)
    await link.start()
    try:
        yield link
    finally:
        await link.close()


class Tally:
    """How many sources run at once across the contenders, and the most ever."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0


class Running:
    """A source that runs until cancelled, counting its starts and stops in a :class:`Tally`."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.running = False
        self.starts = 0
        self.stops = 0

    async def run(self, sink: LiveSink) -> None:
        self.running, self.starts = True, self.starts + 1
        self.tally.running += 1
        self.tally.most = max(self.tally.most, self.tally.running)
        try:
            await asyncio.Event().wait()
        finally:
            self.running, self.stops = False, self.stops + 1
            self.tally.running -= 1


class QuerySource:
    """A source that reads the PBX's ``query_in_session`` (all rooms) each time it is told."""

    def __init__(self, session: PbxSession) -> None:
        self._session = session
        self._asks: asyncio.Queue[None] = asyncio.Queue()
        self.listings = 0

    def poll(self) -> None:
        self._asks.put_nowait(None)

    async def run(self, sink: LiveSink) -> None:
        while True:
            await self._asks.get()
            sink.rooms_listed(await query_in_session(self._session, ALL))
            self.listings += 1


class Feed:
    """A sink that keeps each room's last state, as a feed would, and the rooms it watches."""

    def __init__(self, watched: Collection[str] = ()) -> None:
        self.rooms: dict[str, LiveSession | None] = {}
        self.watched = set(watched)
        self.changes = 0
        self.listings = 0
        self.resyncs = 0

    def room_changed(self, number: str, session: LiveSession | None) -> None:
        self.rooms[number] = session
        self.changes += 1

    def rooms_listed(
        self,
        listing: Mapping[str, LiveSession],
        rooms: Collection[str] | None = None,
        *,
        resync: bool = False,
    ) -> None:
        everything = set(self.rooms) | set(listing) | self.watched  # as the feed reads None
        for number in everything if rooms is None else rooms:
            self.rooms[number] = listing.get(number)
        self.listings += 1
        self.resyncs += resync

    def watched_rooms(self) -> frozenset[str]:
        return frozenset(self.watched)

    def members(self, number: str) -> list[str | None]:
        """Who is in ``number`` by number (an extension) or caller (an outside line)."""
        session = self.rooms.get(number)
        if session is None:
            return []
        return [m.number or m.from_number for m in session.members]
