"""Live data in a fleet against a real redis-server: one lease holder runs the source, the
bus carries its room states, sealed, to every replica's feed.

Time is driven by short lease TTLs; every assertion polls state (who runs, what each feed
holds, the counters), never a duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from cryptography.fernet import Fernet
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from gateway.app import create_app
from gateway.demo import demo_settings
from gateway.fleet.link import RedisLink
from gateway.fleet.sealing import Sealer
from gateway.live.bus import BusSink
from gateway.live.lease import Lease, LeasedSource
from gateway.pbx.client import PbxClient, build_http_client
from gateway.pbx.session import PbxSession
from gateway.pbx.sessions_query import LiveMember, LiveSession
from gateway.runtime import Runtime
from gateway.secrets import Secret
from gateway.serving import LoopbackServer
from gateway.settings import PasswordSource
from gateway.simulator import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    SimulatorConfig,
    SimulatorServer,
    password_digest,
    run_simulator_in_thread,
)
from tests.live_fleet_helpers import Feed, QuerySource, Running, Tally, cable_to, redis_link
from tests.processes import GatewayProcess, RedisProcess, redis_process
from tests.timing import FakeClock, eventually

__all__ = ["redis_process"]

KEY = Fernet.generate_key().decode()
PM = "6401"
TTL = 1.5  # the lease: renewed every 0.5 s; a dead holder's is free within 2 s


@pytest.fixture
async def raw(redis_process: RedisProcess) -> AsyncIterator[redis.Redis]:
    """A plain client reading and writing Redis as anyone with access to it would."""
    client = redis.Redis.from_url(redis_process.url)
    try:
        yield client
    finally:
        await client.aclose()


# --- the lease ------------------------------------------------------------------------------


@dataclass
class Contender:
    """One replica contending for the lease: its lease, its source, the running task."""

    lease: Lease
    source: Running
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@contextlib.asynccontextmanager
async def contenders(
    links: list[RedisLink], tally: Tally, *, ttl: float = TTL
) -> AsyncIterator[Callable[[RedisLink], Contender]]:
    """``start(link)`` starts one contender on ``link``; all are stopped on exit."""
    started: list[Contender] = []

    def start(link: RedisLink) -> Contender:
        lease, source = Lease(link, ttl=ttl), Running(tally)
        task = asyncio.create_task(LeasedSource(lease, source).run(Feed()))
        started.append(Contender(lease, source, task))
        return started[-1]

    try:
        yield start
    finally:
        for contender in started:
            await contender.stop()


@contextlib.asynccontextmanager
async def links(url: str, count: int) -> AsyncIterator[list[RedisLink]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(redis_link(url)) for _ in range(count)]


async def test_lease_one_holder_among_three_contenders(redis_process: RedisProcess) -> None:
    """Three replicas contend: exactly one runs its source, through many renewals."""
    tally = Tally()
    async with links(redis_process.url, 3) as three, contenders(three, tally) as start:
        replicas = [start(link) for link in three]
        await eventually(lambda: tally.running == 1, what="one source running")
        holder = next(r for r in replicas if r.source.running)
        renewed = await _renewals(holder.lease, 6)  # two TTLs' worth of renewals

        assert renewed >= 6
        assert tally.most == 1 and tally.running == 1
        assert sum(r.lease.acquired for r in replicas) == 1
        assert sum(r.source.starts for r in replicas) == 1


@pytest.mark.parametrize("failure", ["cut", "stall"])
async def test_lease_holder_cut_off_is_fenced_and_another_takes_over(
    redis_process: RedisProcess, failure: str
) -> None:
    """The holder loses Redis (connections cut, or a partition where nothing answers): it
    stops its source by itself, and another replica holds the lease once the key expires;
    never two sources at once."""
    tally = Tally()
    async with (
        cable_to(redis_process.port) as cable,
        redis_link(cable.url, slow=5.0) as cut_off,
        links(redis_process.url, 2) as others,
        contenders([], tally) as start,
    ):
        first = start(cut_off)
        await eventually(lambda: first.source.running, what="the first replica holding")
        rest = [start(link) for link in others]
        old_term = first.lease.term

        getattr(cable, failure)()
        await eventually(lambda: not first.source.running, what="the holder fenced")
        await eventually(lambda: tally.running == 1, what="another replica's source running")

        successor = next(r for r in rest if r.source.running)
        assert first.lease.lost == 1 and first.source.stops == 1
        assert tally.most == 1
        assert successor.lease.term is not None and old_term is not None
        assert successor.lease.term > old_term

        cable.mend()  # back on Redis, the former holder waits: the lease is taken
        await _renewals(successor.lease, 3)
        assert not first.source.running and first.source.starts == 1
        assert tally.most == 1


async def test_lease_clean_release_hands_over_at_once(redis_process: RedisProcess) -> None:
    """A holder that shuts down releases: a waiting replica holds at once, not at its next
    try (with a 60 s TTL the next try is 20 s away; the handover is awaited for 10)."""
    tally = Tally()
    async with links(redis_process.url, 2) as two, contenders(two, tally, ttl=60) as start:
        first = start(two[0])
        await eventually(lambda: first.source.running, what="the first replica holding")
        second = start(two[1])
        await eventually(lambda: second.lease.tries >= 1, what="the second replica waiting")

        await first.stop()
        await eventually(lambda: second.source.running, what="the handover")

        assert first.lease.released == 1 and first.source.stops == 1
        assert second.lease.acquired == 1 and tally.most == 1


async def test_lease_holder_whose_key_was_taken_stops_its_source(
    redis_process: RedisProcess,
    raw: redis.Redis,
) -> None:
    """Someone else holds the key (written over in Redis): the holder's next renewal is
    refused and it stops its source at once; it takes the lease again only once it is free."""
    tally = Tally()
    async with links(redis_process.url, 1) as one, contenders(one, tally) as start:
        replica = start(one[0])
        await eventually(lambda: replica.source.running, what="the replica holding")

        await raw.set(replica.lease.key, b"another holder", px=60_000)
        await eventually(lambda: not replica.source.running, what="the holder fenced")
        tries = replica.lease.tries
        await eventually(lambda: replica.lease.tries >= tries + 3, what="three more tries")
        assert replica.lease.lost == 1 and replica.source.starts == 1
        assert await raw.get(replica.lease.key) == b"another holder"  # never deleted: not its own

        await raw.delete(replica.lease.key)
        await eventually(lambda: replica.source.starts == 2, what="the lease taken again")
        assert tally.most == 1


async def test_lease_term_grows_even_when_redis_lost_the_counter(
    redis_process: RedisProcess,
    raw: redis.Redis,
) -> None:
    """Each hold's term is larger than the last, also after Redis lost its keys (the term
    follows Redis's clock), so replicas never take a new holder's messages for old ones."""
    async with links(redis_process.url, 1) as one:
        lease = Lease(one[0], ttl=TTL)
        first = await lease.acquire()
        await lease.release()
        second = await lease.acquire()
        await lease.release()
        await raw.flushall()
        third = await lease.acquire()
        await lease.release()
    assert first < second < third


async def _renewals(lease: Lease, count: int) -> int:
    start = lease.renewals
    await eventually(lambda: lease.renewals >= start + count, what=f"{count} renewals")
    return lease.renewals - start


# --- the bus --------------------------------------------------------------------------------


@dataclass
class Replica:
    feed: Feed
    bus: BusSink
    link: RedisLink


@contextlib.asynccontextmanager
async def bus_fleet(
    urls: list[str], watched: list[set[str]], *, term: Callable[[], int | None] = lambda: 1
) -> AsyncIterator[list[Replica]]:
    """One replica per URL, each listening on the bus into its own feed; the first one's bus
    answers to ``term`` (the holder), the others hold nothing."""
    async with contextlib.AsyncExitStack() as stack:
        replicas: list[Replica] = []
        for index, (url, rooms) in enumerate(zip(urls, watched, strict=True)):
            link = await stack.enter_async_context(redis_link(url))
            feed = Feed(rooms)
            bus = BusSink(
                link,
                Sealer(Secret(KEY)),
                feed,
                term=term if index == 0 else (lambda: None),
                watch_ttl=1.5,
                watch_refresh=0.1,
            )
            replicas.append(Replica(feed, bus, link))
        tasks = [asyncio.create_task(r.bus.listen()) for r in replicas]
        try:
            for replica in replicas:
                await eventually(lambda r=replica: r.bus.subscriptions >= 1, what="subscribed")
            # Each replica watching a room asked for a resync on subscribing; once the holder
            # heard them (and had nothing to answer yet), counts start from a quiet bus.
            asking = sum(1 for r in replicas[1:] if r.feed.watched)
            holder = replicas[0].bus
            await eventually(lambda: holder.requests_heard >= asking, what="requests heard")
            yield replicas
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def pbx() -> AsyncIterator[tuple[SimulatorServer, PbxSession]]:
    """The simulated PBX on loopback and a logged-in-on-demand session to it."""
    async with (
        SimulatorServer() as server,
        build_http_client(base_url=server.base_url, timeout=5.0, verify=True) as http,
    ):
        session = PbxSession(
            PbxClient(http),
            username=DEMO_USERNAME,
            password=PasswordSource(md5=Secret(password_digest(DEMO_PASSWORD))),
            clock=FakeClock(),
        )
        try:
            yield server, session
        finally:
            await session.close()


async def test_bus_change_reaches_every_replica_feed(redis_process: RedisProcess) -> None:
    """A member joins at the PBX; the holder's source reads it: every replica's feed has them,
    with the same member details; when they leave, every feed has the room empty."""
    url = redis_process.url
    async with pbx() as (sim, session), bus_fleet([url] * 3, [{PM}, {PM}, set()]) as replicas:
        source = QuerySource(session)
        running = asyncio.create_task(source.run(replicas[0].bus))
        try:
            sim.state.live_join(PM, "4001")
            source.poll()
            await eventually(
                lambda: all(r.feed.members(PM) == ["4001"] for r in replicas), what="joined"
            )
            sessions = {r.feed.rooms[PM] for r in replicas}
            assert len(sessions) == 1  # the same LiveSession, channel id and all, everywhere

            sim.state.live_leave(PM, "4001")
            source.poll()
            await eventually(
                lambda: all(r.feed.rooms.get(PM, "?") is None for r in replicas), what="left"
            )
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        assert replicas[0].bus.published == 2
        assert all(r.bus.applied == 2 for r in replicas[1:])
        assert all(not r.bus.dropped for r in replicas)


async def test_bus_messages_hide_members_from_redis_readers(
    redis_process: RedisProcess, raw: redis.Redis
) -> None:
    """What crosses Redis names neither the member's number nor their channel id."""
    async with (
        bus_fleet([redis_process.url] * 2, [{PM}, {PM}]) as (holder, other),
        raw.pubsub() as spy,
    ):
        await spy.subscribe(holder.bus.channel)
        holder.bus.room_changed(PM, _session(PM, "4001", "PJSIP/4001-0000002a"))
        await eventually(lambda: other.feed.members(PM) == ["4001"], what="delivered")
        heard = await _next_message(spy)
    assert b"4001" not in heard and b"PJSIP" not in heard and b"6401" not in heard


async def test_bus_drops_tampered_unsealed_old_and_replayed_messages(
    redis_process: RedisProcess,
    raw: redis.Redis,
) -> None:
    """Garbage, a sealed message altered, one sealed with another key, one too old, and a
    genuine one replayed: each dropped and counted, the feed untouched; the bus still works."""
    async with bus_fleet([redis_process.url] * 2, [{PM}, {PM}]) as (holder, other):
        async with raw.pubsub() as spy:
            await spy.subscribe(holder.bus.channel)
            holder.bus.room_changed(PM, _session(PM, "4001", "PJSIP/4001-1"))
            await eventually(lambda: other.feed.members(PM) == ["4001"], what="delivered")
            genuine = await _next_message(spy)

        channel = holder.bus.channel
        forged = {
            "origin": "intruder",
            "term": 1 << 60,
            "seq": 1,
            "op": "changed",
            "number": PM,
            "session": {"number": PM, "name": None, "callid": None, "members": []},
        }
        altered = genuine[:-1] + bytes([genuine[-1] ^ 1])
        other_key = Sealer(Secret(Fernet.generate_key().decode())).seal(
            channel, forged, time.time()
        )
        too_old = Sealer(Secret(KEY)).seal(channel, forged, time.time() - 120)
        for blob in (b"not sealed at all", altered, other_key, too_old, genuine):
            await raw.publish(channel, blob)
        await eventually(lambda: sum(other.bus.dropped.values()) == 5, what="five dropped")

        assert other.bus.dropped == {"unsealed": 4, "stale": 1}
        assert other.feed.members(PM) == ["4001"] and other.bus.applied == 1

        holder.bus.room_changed(PM, None)  # still listening
        await eventually(lambda: other.feed.rooms[PM] is None, what="the next change")


async def test_bus_former_holders_late_messages_are_dropped(redis_process: RedisProcess) -> None:
    """A message sent under an older term (a fenced holder's, still in flight) is dropped
    once a newer term was heard; the newer holder's states stand."""
    url = redis_process.url
    async with bus_fleet([url] * 3, [{PM}] * 3) as (new, old, listener):
        terms = iter([2, 2])
        new.bus._term = lambda: next(terms, 2)
        old.bus._term = lambda: 1
        new.bus.room_changed(PM, _session(PM, "4002", "PJSIP/4002-1"))
        await eventually(lambda: listener.feed.members(PM) == ["4002"], what="term 2 heard")

        old.bus.room_changed(PM, _session(PM, "4001", "PJSIP/4001-1"))
        await eventually(lambda: listener.bus.dropped["stale"] == 1, what="term 1 dropped")
        assert listener.feed.members(PM) == ["4002"]
        assert new.feed.members(PM) == ["4002"]


async def test_bus_source_without_the_lease_is_never_heard(redis_process: RedisProcess) -> None:
    """A source still running after its lease was lost writes into a bus whose term is None:
    nothing is applied, locally or elsewhere."""
    async with bus_fleet([redis_process.url] * 2, [{PM}, {PM}], term=lambda: None) as replicas:
        fenced, other = replicas
        fenced.bus.room_changed(PM, _session(PM, "4001", "PJSIP/4001-1"))
        fenced.bus.rooms_listed({}, None)
        await asyncio.sleep(0)
        assert fenced.bus.dropped["fenced"] == 2 and fenced.bus.published == 0
        assert fenced.feed.rooms == {} and other.feed.rooms == {}


async def test_bus_watched_rooms_are_the_fleets_union(
    redis_process: RedisProcess, raw: redis.Redis
) -> None:
    """The holder's sink answers the rooms every replica watches; a replica that stops
    refreshing drops out after the watch TTL; an entry not sealed by the fleet counts not."""
    url = redis_process.url
    async with bus_fleet([url] * 3, [{"6400"}, {PM}, {"6402", "6403"}]) as (holder, b, c):
        expected = frozenset({"6400", PM, "6402", "6403"})
        await eventually(lambda: holder.bus.watched_rooms() == expected, what="the union")
        await raw.hset(holder.bus.watch.key, "intruder", b"9999")  # not sealed: ignored

        b.feed.watched = {PM, "6404"}
        c.feed.watched = set()
        expected = frozenset({"6400", PM, "6404"})
        await eventually(lambda: holder.bus.watched_rooms() == expected, what="the new union")
        assert await raw.hexists(holder.bus.watch.key, "intruder") == 0  # removed


async def test_bus_watch_entry_of_a_gone_replica_expires(redis_process: RedisProcess) -> None:
    """A replica that stops (crashes) stops refreshing its entry: after the watch TTL its
    rooms are no longer asked for."""
    url = redis_process.url
    async with bus_fleet([url], [set()]) as (holder,):
        async with bus_fleet([url], [{PM}]) as (gone,):
            await eventually(lambda: holder.bus.watched_rooms() == {PM}, what="watched")
            del gone
        await eventually(lambda: holder.bus.watched_rooms() == frozenset(), what="expired")


async def test_bus_replica_whose_subscription_dropped_resyncs_from_the_holder(
    redis_process: RedisProcess,
) -> None:
    """A replica misses changes while its Redis connection is down; when it is back it asks
    the holder, which answers from its state (no PBX call): the feed ends on the truth."""
    async with (
        cable_to(redis_process.port) as cable,
        bus_fleet([redis_process.url, redis_process.url, cable.url], [{PM}, {PM}, {PM}]) as (
            holder,
            other,
            cut_off,
        ),
    ):
        holder.bus.rooms_listed({}, None)
        await eventually(lambda: cut_off.feed.rooms.get(PM, "?") is None, what="first state")
        subscriptions = cut_off.bus.subscriptions

        cable.cut()
        holder.bus.room_changed(PM, _session(PM, "4001", "PJSIP/4001-1"))
        holder.bus.room_changed("6400", _session("6400", "4009", "PJSIP/4009-1"))
        await eventually(lambda: other.feed.members(PM) == ["4001"], what="the others hear")
        assert cut_off.feed.rooms[PM] is None

        cable.mend()
        await eventually(lambda: cut_off.feed.members(PM) == ["4001"], what="resynced")
        assert cut_off.bus.subscriptions > subscriptions
        assert cut_off.bus.resyncs_asked >= 1 and holder.bus.resyncs_answered >= 1
        assert cut_off.feed.resyncs >= 1  # its subscribers see RESYNCED
        assert "6400" not in cut_off.feed.rooms  # only the rooms it watches were sent
        assert other.feed.rooms[PM] is not None and other.bus.dropped == {}


async def test_bus_gap_in_the_sequence_asks_for_a_resync(redis_process: RedisProcess) -> None:
    """A change the holder could not publish (Redis cut off just then) shows as a gap at its
    next message; the replica asks for a resync and gets the room's true state."""
    async with (
        cable_to(redis_process.port) as cable,
        bus_fleet([cable.url, redis_process.url], [{PM}, {PM}]) as (holder, other),
    ):
        holder.bus.room_changed(PM, _session(PM, "4001", "PJSIP/4001-1"))
        await eventually(lambda: other.feed.members(PM) == ["4001"], what="first")

        cable.cut()
        holder.bus.room_changed(PM, _session(PM, "4005", "PJSIP/4005-1"))  # lost on the way
        await eventually(lambda: holder.bus.unsent == 1, what="the change lost")
        cable.mend()
        await eventually(lambda: holder.link.up, what="the holder back on Redis")
        holder.bus.room_changed("6400", None)

        await eventually(lambda: other.bus.gaps == 1, what="the gap seen")
        await eventually(lambda: other.feed.members(PM) == ["4005"], what="resynced")
        assert holder.bus.resyncs_answered >= 1


def _session(number: str, member: str, channel: str) -> LiveSession:
    return LiveSession(
        number=number,
        name="PM",
        callid="1700000000.1",
        members=(LiveMember("ext", member, None, None, None, channel, "ANSWERED"),),
    )


async def _next_message(pubsub: Any) -> bytes:
    """The next state message heard on the bus (resync requests are skipped), sealed."""
    opener = Sealer(Secret(KEY))
    give_up = time.monotonic() + 10
    while time.monotonic() < give_up:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        if message is None or message["type"] != "message":
            continue
        data: bytes = message["data"]
        opened = opener.open(message["channel"].decode(), data, max_age=60)
        if opened is not None and opened[0]["op"] != "resync":
            return data
    raise AssertionError("no state message on the channel")


# --- two gateway replicas, one Redis, one simulated PBX (the Done-when) -----------------------

WATCH = (
    "subscription Watch($numbers: [String]) { conferenceSessions(numbers: $numbers) "
    "{ number reason session { participants { number } } } }"
)


class Subscriber:
    """A graphql-transport-ws client subscribed to one room on one replica; every update it
    receives is kept in ``updates`` (a background task reads them)."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.updates: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, replica: GatewayProcess, number: str) -> Subscriber:
        url = replica.url.replace("http://", "ws://") + "/graphql"
        connection = await connect(
            url,
            subprotocols=[Subprotocol("graphql-transport-ws")],
            open_timeout=30,
            ping_interval=None,
        )
        await connection.send(json.dumps({"type": "connection_init", "payload": {}}))
        ack = json.loads(await asyncio.wait_for(connection.recv(), 30))
        assert ack["type"] == "connection_ack", ack
        payload = {"query": WATCH, "variables": {"numbers": [number]}}
        await connection.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        return cls(connection)

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for text in self.connection:
                message = json.loads(text)
                if message["type"] == "ping":
                    await self.connection.send(json.dumps({"type": "pong"}))
                elif message["type"] == "next":
                    assert "errors" not in message["payload"], message
                    self.updates.append(message["payload"]["data"]["conferenceSessions"])

    def members(self) -> list[str] | None:
        return _members_of(self.updates)

    async def close(self) -> None:
        await self.connection.close()
        await self._reader


class MultipartSubscriber:
    """The multipart HTTP subscription protocol (Apollo Client's, urql's) on one replica:
    one streamed response, each part an update or a ``{}`` heartbeat; kept in ``updates``."""

    MARK = b"\r\n--graphql"
    ACCEPT = 'multipart/mixed;boundary="graphql";subscriptionSpec=1.0,application/json'

    def __init__(self, replica: GatewayProcess, number: str) -> None:
        self.updates: list[dict[str, Any]] = []
        body = {"query": WATCH, "variables": {"numbers": [number]}}
        self._reader = asyncio.create_task(self._read(replica.url, body))

    async def _read(self, url: str, body: dict[str, Any]) -> None:
        async with (
            httpx.AsyncClient(timeout=60) as client,  # heartbeats come every 15 s
            client.stream(
                "POST", f"{url}/graphql", json=body, headers={"accept": self.ACCEPT}
            ) as response,
        ):
            assert response.status_code == 200
            buffer, started = b"", False
            async for chunk in response.aiter_bytes():
                buffer += chunk
                while (at := buffer.find(self.MARK)) >= 0:
                    part, buffer = buffer[:at], buffer[at + len(self.MARK) :]
                    if started and part.strip():
                        found = json.loads(part.split(b"\r\n\r\n", 1)[1])
                        if found != {}:  # a heartbeat
                            self.updates.append(found["payload"]["data"]["conferenceSessions"])
                    started = True

    def members(self) -> list[str] | None:
        return _members_of(self.updates)

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


def _members_of(updates: list[dict[str, Any]]) -> list[str] | None:
    """Who the last update says is in the room (None before any update)."""
    if not updates:
        return None
    session = updates[-1]["session"]
    return [] if session is None else [p["number"] for p in session["participants"]]


class ReportSampler:
    """Samples how many report connections the PBX has, every few milliseconds, in a thread
    (the gateway's replicas and the simulator run elsewhere): ``most`` is the most seen."""

    def __init__(self, sim: SimulatorServer) -> None:
        self._sim = sim
        self.most = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.most = max(self.most, len(self._sim.state.reports.connections))
            self.samples += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _lease_held(replica: GatewayProcess) -> bool:
    text = httpx.get(f"{replica.url}/metrics").text
    return "gateway_live_lease_held 1.0" in text


def _replicas(
    tmp_path: Path, redis: RedisProcess, sim: SimulatorServer, *, lease_ttl: int
) -> list[GatewayProcess]:
    env = {
        "PBX_URL": sim.base_url,
        "PBX_USERNAME": DEMO_USERNAME,
        "PBX_PASSWORD": DEMO_PASSWORD,  # the TCP report login needs the clear password
        "PBX_REPORT_PORT": str(sim.report_port),
        "GATEWAY_AUTH": "none",
        "GATEWAY_REDIS_URL": redis.url,
        "GATEWAY_REDIS_TOKEN_KEY": KEY,
        "GATEWAY_LIVE_LEASE_TTL": str(lease_ttl),
        "GATEWAY_LOG_LEVEL": "WARNING",
    }
    return [GatewayProcess(env, tmp_path / f"replica-{i}.log") for i in range(2)]


@pytest.mark.parametrize("ending", ["killed", "stopped"])
async def test_fleet_channel_holder_ends_the_other_takes_over_and_subscribers_keep_receiving(
    tmp_path: Path, redis_process: RedisProcess, ending: str
) -> None:
    """Two replicas with Redis, one PBX: one replica holds the report channel; subscribers on
    both see a join. The holder is killed (no release: the lease expires) or stopped (it
    releases, so the other takes over at once, long before the lease could expire): the
    other takes the lease and opens the report channel (one more report
    login), and its subscriber sees the next join. The PBX never has two report
    connections at once."""
    with run_simulator_in_thread(SimulatorConfig()) as sim:
        # Killed: a 3 s TTL, so the successor holds within 4 s. Stopped: 120 s, so only the
        # release the holder announces on shutdown can hand over within the wait below.
        ttl = 3 if ending == "killed" else 120
        replicas = _replicas(tmp_path, redis_process, sim, lease_ttl=ttl)
        sampler = ReportSampler(sim)
        subscribers: list[Subscriber | MultipartSubscriber] = []
        try:
            for replica in replicas:
                replica.wait_ready()
            logins = sim.state.stats.live
            await eventually(
                lambda: logins["report_logins_succeeded"] == 1 and sum(map(_lease_held, replicas)),
                seconds=30,
                what="one replica holding the report channel",
            )
            holder = next(r for r in replicas if _lease_held(r))
            survivor = next(r for r in replicas if r is not holder)
            subscribers = [await Subscriber.open(r, PM) for r in (holder, survivor)]
            subscribers.append(MultipartSubscriber(survivor, PM))
            await eventually(
                lambda: all(s.members() == [] for s in subscribers), what="INITIAL, empty"
            )

            sim.state.live_join(PM, "4001")
            await eventually(
                lambda: all(s.members() == ["4001"] for s in subscribers), what="both see 4001"
            )

            if ending == "killed":
                holder.process.kill()
            else:
                holder.process.terminate()
            await eventually(
                lambda: logins["report_logins_succeeded"] == 2 and _lease_held(survivor),
                seconds=30,
                what="the survivor holding the lease and the report channel",
            )
            sim.state.live_join(PM, "4002")
            for watcher in subscribers[1:]:  # the survivor's, over WebSocket and multipart
                await eventually(
                    lambda w=watcher: w.members() == ["4001", "4002"], what="survivor subscribers"
                )
                assert [u["reason"] for u in watcher.updates][:2] == ["INITIAL", "CHANGED"]
            assert logins["report_logins_succeeded"] == 2 and logins["report_logins_failed"] == 0
        finally:
            sampler.stop()
            for subscriber in subscribers:
                with contextlib.suppress(ConnectionClosed, OSError):
                    await subscriber.close()
            for replica in replicas:
                replica.stop()
        assert sampler.samples > 100
        assert sampler.most == 1


# --- the app's wiring ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def one_gateway(**overrides: Any) -> AsyncIterator[tuple[SimulatorServer, Runtime]]:
    """The simulator and one gateway in this process, live source on (``auto``: events)."""
    async with SimulatorServer() as sim:
        settings = dataclasses.replace(
            demo_settings(sim.base_url, sim.report_port), live_source="auto", **overrides
        )
        async with LoopbackServer(create_app(settings), log_level="critical") as gateway:
            runtime: Runtime = gateway.app.runtime
            yield sim, runtime


async def test_app_with_redis_runs_the_source_under_the_lease_into_the_bus(
    redis_process: RedisProcess, raw: redis.Redis
) -> None:
    """With Redis the app's source runs under the lease and its subscribers hear the bus;
    shutting down releases the lease (the key is gone at once)."""
    fleet = {"redis_url": Secret(redis_process.url), "redis_token_key": Secret(KEY)}
    async with one_gateway(**fleet) as (sim, runtime):
        live = runtime.live_fleet
        assert live is not None
        await eventually(lambda: live.lease.term is not None, what="the lease held")
        await eventually(lambda: sim.state.stats.live["report_logins_succeeded"] == 1)
        async with runtime.feed.subscribe([PM]) as subscription:
            first = await asyncio.wait_for(anext(subscription), 10)
            assert first.session is None
            sim.state.live_join(PM, "4001")
            changed = await asyncio.wait_for(anext(subscription), 10)
            assert changed.session is not None
            assert [m.number for m in changed.session.members] == ["4001"]
        # Told to this replica's feed at once, and published for the others.
        await eventually(lambda: live.bus.published >= 1, what="published on the bus")
        assert await raw.exists(live.lease.key) == 1
    assert await raw.exists(live.lease.key) == 0
    assert live.lease.released == 1


async def test_app_without_redis_has_no_lease_and_no_bus() -> None:
    """Without Redis the source runs straight into the feed: nothing of the fleet exists."""
    async with one_gateway() as (sim, runtime):
        assert runtime.live_fleet is None
        await eventually(lambda: sim.state.stats.live["report_logins_succeeded"] == 1)
        async with runtime.feed.subscribe([PM]) as subscription:
            assert (await asyncio.wait_for(anext(subscription), 10)).session is None
            sim.state.live_join(PM, "4001")
            changed = await asyncio.wait_for(anext(subscription), 10)
            assert changed.session is not None


async def test_app_holder_polls_the_rooms_another_replica_watches(
    redis_process: RedisProcess,
) -> None:
    """A PBX without events: the holder's poller asks for a room only the other replica's
    subscriber watches (the fleet's union), and that subscriber gets the change."""
    async with SimulatorServer(SimulatorConfig(events=False)) as sim:
        settings = dataclasses.replace(
            demo_settings(sim.base_url, sim.report_port),
            live_source="poll",
            live_poll_interval=0.2,
            redis_url=Secret(redis_process.url),
            redis_token_key=Secret(KEY),
        )
        async with LoopbackServer(create_app(settings), log_level="critical") as first:
            holder: Runtime = first.app.runtime
            leader = holder.live_fleet
            assert leader is not None
            await eventually(lambda: leader.lease.term is not None, what="held")
            async with LoopbackServer(create_app(settings), log_level="critical") as second:
                other: Runtime = second.app.runtime
                assert other.live_fleet is not None and other.live_fleet.lease.term is None
                async with other.feed.subscribe([PM]) as subscription:
                    assert (await asyncio.wait_for(anext(subscription), 10)).session is None
                    await eventually(lambda: PM in leader.bus.watched_rooms(), what="union")
                    assert holder.feed.watched_rooms() == frozenset()  # nobody there
                    sim.state.live_join(PM, "4001")
                    changed = await asyncio.wait_for(anext(subscription), 10)
                    assert changed.session is not None
                    assert [m.number for m in changed.session.members] == ["4001"]
                assert holder.live_sources.supervisor.poller.counts.polls >= 1
                assert other.live_sources.supervisor.poller.counts.polls == 0  # not holding


async def test_bus_drops_sealed_messages_of_another_shape_and_oversized_ones(
    redis_process: RedisProcess, raw: redis.Redis
) -> None:
    """Sealed by the fleet but not a shape this gateway writes (a change naming another
    room, a member of no known kind), or larger than the bound: dropped and counted, the
    feed untouched."""
    async with bus_fleet([redis_process.url] * 2, [{PM}, {PM}]) as (holder, other):
        channel, sealer = holder.bus.channel, Sealer(Secret(KEY))
        base = {"origin": "elsewhere", "term": 1 << 60, "op": "changed", "number": PM}
        other_room: dict[str, Any] = {"number": "6400", "name": None, "callid": None, "members": []}
        odd_member = {"number": PM, "name": None, "callid": None, "members": [{"kind": "x"}]}
        for seq, session in enumerate((other_room, odd_member), start=1):
            body = {**base, "seq": seq, "session": session}
            await raw.publish(channel, sealer.seal(channel, body, time.time()))
        await raw.publish(channel, b"s1" + bytes(5 * 1024 * 1024))
        await eventually(lambda: sum(other.bus.dropped.values()) == 3, what="three dropped")

        assert other.bus.dropped == {"shape": 2, "size": 1}
        assert other.feed.rooms == {} and other.bus.applied == 0
