"""ConferenceStatus over the simulator's report channel: the TCP report port (plain-text login,
same lockout, JSON lines) and HTTP push to a real loopback receiver; events off, the channel
dropped, and resync through ``query_in_session``."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.simulator import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    SimulatorServer,
    password_digest,
    profile_config,
    run_simulator_in_thread,
)
from tests.loopback import serve_app
from tests.timing import eventually

BRIDGE = "6403"  # Support Bridge: moderators 4000,4001, nobody waits
LOGIN_BLOCK = f"Action: login\r\nUsername: {DEMO_USERNAME}\r\nSecret: {DEMO_PASSWORD}\r\n"
WAIT = 5.0  # generous: only a hang reaches it


class ReportClient:
    """One application-side TCP report connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def event(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), WAIT)
        assert line.endswith(b"\r\n"), line
        event: dict[str, Any] = json.loads(line)
        return event

    async def closed(self) -> bool:
        """Whether the PBX closed the connection (our side is closed too, afterwards)."""
        ended = await asyncio.wait_for(self.reader.read(), WAIT) == b""
        self.close()
        return ended

    def close(self) -> None:
        self.writer.close()


async def _connect(
    port: int, block: str = LOGIN_BLOCK + "Version: 2.0.0\r\n\r\n"
) -> tuple[ReportClient, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(block.encode())
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    return ReportClient(reader, writer), answer


async def _logged_in(sim: SimulatorServer) -> ReportClient:
    client, answer = await _connect(sim.report_port)
    assert answer.startswith(b"Response: Success\r\n")
    # The hub registers the connection once the answer is written: wait for it to count.
    await eventually(lambda: client_count(sim) >= 1)
    return client


def client_count(sim: SimulatorServer) -> int:
    return len(sim.state.reports.connections)


async def test_report_tcp_login_then_one_event_per_change() -> None:
    """After the plain-text login each join and leave arrives once, on every connection, as one
    JSON line with the full member list and the PBX's serial number as ``sn``."""
    async with SimulatorServer() as sim:
        first = await _logged_in(sim)
        second = await _logged_in(sim)
        await eventually(lambda: client_count(sim) >= 2)
        sim.state.live_join(BRIDGE, "4001")
        sim.state.live_join(BRIDGE, "4009")
        sim.state.live_leave(BRIDGE, "4001")
        for client in (first, second):
            events = [await client.event() for _ in range(3)]
            assert [e["event"] for e in events] == ["ConferenceStatus"] * 3
            assert [[m["ext"]["number"] for m in e["members"]] for e in events] == [
                ["4001"],
                ["4001", "4009"],
                ["4009"],
            ]
            assert {e["sn"] for e in events} == {sim.state.config.device_sn}
            assert {e["callid"] for e in events} == {events[0]["callid"]}
            assert events[0]["conferencenumber"] == BRIDGE
            assert events[0]["members"][0]["ext"]["callpath"] == BRIDGE
        live = dict(sim.state.stats.live)
        first.close()
        second.close()
    assert live["events_generated"] == 3
    assert live["tcp_events_sent"] == 6
    assert live["report_logins_succeeded"] == 2


async def test_report_tcp_last_leave_sends_an_empty_room() -> None:
    """The last member leaving makes one event with no members (chosen; no end event exists);
    with ``empty_room_event`` off it makes none."""
    async with SimulatorServer() as sim:
        client = await _logged_in(sim)
        sim.state.live_join(BRIDGE, "4001")
        sim.state.live_leave(BRIDGE, "4001")
        sim.state.configure(empty_room_event=False)
        sim.state.live_join(BRIDGE, "4002")
        sim.state.live_leave(BRIDGE, "4002")
        sim.state.live_join(BRIDGE, "4003")
        members = [len((await client.event())["members"]) for _ in range(4)]
        client.close()
    assert members == [1, 0, 1, 1]


async def test_report_tcp_wrong_secret_counts_toward_the_lockout() -> None:
    """A wrong secret is refused and the connection closed; failures count toward the same
    lockout as API logins, so the API login and the right secret then meet the lock."""
    config = profile_config("s-series-v2", lockout_threshold=3)
    async with SimulatorServer(config) as sim:
        async with httpx.AsyncClient(base_url=sim.base_url) as pbx:
            bad = {"username": DEMO_USERNAME, "password": password_digest("wrong")}
            assert (await pbx.post("/api/v2.0.0/login", json=bad)).json()["errno"] == "20003"
            for block in (
                f"Action: login\r\nUsername: {DEMO_USERNAME}\r\nSecret: wrong\r\n\r\n",
                # The MD5 is what the HTTP login takes; the report login wants clear text.
                f"Action: login\r\nUsername: {DEMO_USERNAME}\r\n"
                f"Secret: {password_digest(DEMO_PASSWORD)}\r\n\r\n",
            ):
                client, answer = await _connect(sim.report_port, block)
                assert answer == b"Response: Error\r\nMessage: Authentication failed\r\n\r\n"
                assert await client.closed()
            right = {"username": DEMO_USERNAME, "password": password_digest(DEMO_PASSWORD)}
            api = (await pbx.post("/api/v2.0.0/login", json=right)).json()
        locked, answer = await _connect(sim.report_port)
        assert answer == b"Response: Error\r\nMessage: IP locked\r\n\r\n"
        assert await locked.closed()
        live, stats = dict(sim.state.stats.live), sim.state.stats
    assert api == {"status": "Failed", "errno": "20002"}
    assert (live["report_logins_failed"], live["report_logins_locked"]) == (2, 1)
    assert "report_logins_succeeded" not in live
    assert (stats.logins_failed, stats.logins_locked) == (1, 1)


async def test_report_tcp_success_resets_the_failure_count() -> None:
    """A good report login starts the failure count over, as a good API login does."""
    config = profile_config("s-series-v2", lockout_threshold=2)
    async with SimulatorServer(config) as sim:
        bad = f"Action: login\r\nUsername: {DEMO_USERNAME}\r\nSecret: nope\r\n\r\n"
        for _ in range(3):
            client, answer = await _connect(sim.report_port, bad)
            assert answer.startswith(b"Response: Error")
            client.close()
            good = await _logged_in(sim)
            good.close()
        failures = sim.state.lockout.failures("127.0.0.1")
    assert failures == 0


async def test_report_tcp_no_login_block_is_closed_uncounted() -> None:
    """A client that hangs up before finishing the login block is closed, counting no failure."""
    async with SimulatorServer() as sim:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.report_port)
        writer.write(b"Action: login\r\nUsername: api\r\n")
        await writer.drain()
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), WAIT) == b""
        writer.close()
        live = dict(sim.state.stats.live)
    assert live.get("report_logins_failed", 0) == 0
    assert live["report_connections"] == 1


async def test_report_events_off_then_on() -> None:
    """With ``events`` off a change makes no event (counted as suppressed); on again, the next
    change's event carries the whole room, so a subscriber can catch up."""
    async with SimulatorServer() as sim:
        client = await _logged_in(sim)
        async with httpx.AsyncClient(base_url=sim.base_url) as admin:
            await admin.post("/__simulator/config", json={"events": False})
            sim.state.live_join(BRIDGE, "4001")
            await admin.post("/__simulator/config", json={"events": True})
        sim.state.live_join(BRIDGE, "4009")
        event = await client.event()
        live = dict(sim.state.stats.live)
        client.close()
    assert [m["ext"]["number"] for m in event["members"]] == ["4001", "4009"]
    assert (live["events_generated"], live["events_suppressed"], live["tcp_events_sent"]) == (
        2,
        1,
        1,
    )


async def test_report_drop_then_resync_with_query_in_session() -> None:
    """``live/report/drop`` closes every report connection; changes while nobody is connected
    are lost to the channel, and one ``query_in_session`` after a new login gives the truth."""
    async with SimulatorServer() as sim:
        first = await _logged_in(sim)
        second = await _logged_in(sim)
        await eventually(lambda: client_count(sim) >= 2)
        async with httpx.AsyncClient(base_url=sim.base_url) as pbx:
            dropped = (await pbx.post("/__simulator/live/report/drop")).json()
            assert dropped == {"dropped": 2}
            assert await first.closed() and await second.closed()
            sim.state.live_join(BRIDGE, "4001")  # nobody hears this one
            again = await _logged_in(sim)
            right = {"username": DEMO_USERNAME, "password": password_digest(DEMO_PASSWORD)}
            token = (await pbx.post("/api/v2.0.0/login", json=right)).json()["token"]
            truth = await pbx.post(
                f"/api/v2.0.0/conference/query_in_session?token={token}", json={"number": "all"}
            )
        sim.state.live_join(BRIDGE, "4009")
        event = await again.event()
        live = dict(sim.state.stats.live)
        again.close()
    assert [m["ext"]["number"] for m in truth.json()["conference"][0]["members"]] == ["4001"]
    assert [m["ext"]["number"] for m in event["members"]] == ["4001", "4009"]
    assert live["report_drops"] == 2
    assert live["tcp_events_sent"] == 1


async def test_report_tcp_from_another_thread() -> None:
    """Changes made from another thread (the demo's threaded simulator) reach a report client
    on the server's loop."""
    with run_simulator_in_thread() as sim:
        port = sim.report_port

        def connect_and_read() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
                sock.sendall((LOGIN_BLOCK + "\r\n").encode())
                stream = sock.makefile("rb")
                while stream.readline() != b"\r\n":
                    pass
                while not sim.state.reports.connections:
                    time.sleep(0.005)
                sim.state.live_join(BRIDGE, "4001")
                return stream.readline()

        line = await asyncio.to_thread(connect_and_read)
    assert json.loads(line)["members"][0]["ext"]["number"] == "4001"


# --- HTTP push ---------------------------------------------------------------------------------


class Receiver:
    """A real loopback HTTP server that records what the PBX posts to it."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts: list[tuple[str, dict[str, str], Any]] = []
        self.app = Starlette(routes=[Route("/{path:path}", self._post, methods=["POST"])])

    async def _post(self, request: Request) -> Response:
        self.posts.append((request.url.path, dict(request.headers), await request.json()))
        return Response(status_code=self.status)

    async def wait_for(self, count: int) -> None:
        await eventually(lambda: len(self.posts) >= count, seconds=WAIT, what=f"{count} posts")


async def _receiver(status: int = 200) -> AsyncIterator[tuple[Receiver, int]]:
    receiver = Receiver(status)
    async with serve_app(receiver.app) as url:
        yield receiver, int(url.rsplit(":", 1)[1])


receiver = pytest.fixture(_receiver)


async def _push_login(sim: SimulatorServer, **extra: str) -> str:
    async with httpx.AsyncClient(base_url=sim.base_url) as pbx:
        body = {"username": DEMO_USERNAME, "password": password_digest(DEMO_PASSWORD), **extra}
        answer = (await pbx.post("/api/v2.0.0/login", json=body)).json()
    assert answer["transport"] == "HTTP", answer
    token: str = answer["token"]
    return token


async def test_report_http_push_posts_each_event(receiver: tuple[Receiver, int]) -> None:
    """With the HTTP method each change is POSTed once as JSON to the login caller's address on
    its ``port``/``url``, with the documented headers; TCP clients get nothing."""
    got, port = receiver
    async with SimulatorServer(profile_config("s-series-v2", transport="HTTP")) as sim:
        await _push_login(sim, port=str(port), url="pbx/events", version="2.0.0")
        sim.state.live_join(BRIDGE, "4001")
        sim.state.live_join(BRIDGE, "4009")
        await got.wait_for(2)
        # Counted once the receiver's answer is back, a moment after the receiver saw it.
        await eventually(lambda: sim.state.stats.live["push_events_sent"] == 2, what="2 sent")
        live = dict(sim.state.stats.live)
    assert [path for path, _, _ in got.posts] == ["/pbx/events", "/pbx/events"]
    headers = got.posts[0][1]
    assert (headers["user-agent"], headers["content-type"]) == ("WebAPI", "application/json")
    # Each event is its own POST on its own connection: they may arrive in either order.
    assert sorted(len(body["members"]) for _, _, body in got.posts) == [1, 2]
    assert got.posts[0][2]["event"] == "ConferenceStatus"
    assert (live["push_events_sent"], live.get("tcp_events_sent", 0)) == (2, 0)


async def test_report_http_push_absolute_url(receiver: tuple[Receiver, int]) -> None:
    """``urltag`` 1 takes ``url`` as an absolute address ("host:port/path")."""
    got, port = receiver
    async with SimulatorServer(profile_config("s-series-v2", transport="HTTP")) as sim:
        await _push_login(sim, port="1", url=f"127.0.0.1:{port}/abs", urltag="1")
        sim.state.live_join(BRIDGE, "4001")
        await got.wait_for(1)
    assert got.posts[0][0] == "/abs"


async def test_report_http_push_retries_then_gives_up() -> None:
    """A receiver answering 500 gets the event 1 + ``push_retries`` times, then it is lost."""
    async for got, port in _receiver(status=500):
        config = profile_config("s-series-v2", transport="HTTP", push_retries=2)
        async with SimulatorServer(config) as sim:
            await _push_login(sim, port=str(port))
            sim.state.live_join(BRIDGE, "4001")
            await got.wait_for(3)
            for _ in range(int(WAIT / 0.01)):
                if sim.state.stats.live["push_events_lost"]:
                    break
                await asyncio.sleep(0.01)
            live = dict(sim.state.stats.live)
        assert len(got.posts) == 3
        assert (live["push_failures"], live["push_events_lost"]) == (3, 1)


async def test_report_http_push_stops_with_the_token(receiver: tuple[Receiver, int]) -> None:
    """Events are pushed only while the login's token lives: after logout nothing is sent."""
    got, port = receiver
    async with SimulatorServer(profile_config("s-series-v2", transport="HTTP")) as sim:
        token = await _push_login(sim, port=str(port))
        sim.state.live_join(BRIDGE, "4001")
        await got.wait_for(1)
        async with httpx.AsyncClient(base_url=sim.base_url) as pbx:
            await pbx.post(f"/api/v2.0.0/logout?token={token}")
        sim.state.live_join(BRIDGE, "4009")
        await asyncio.sleep(0.1)  # a push would have been sent by now; none may arrive
        targets = len(sim.state.reports.push_targets)
    assert len(got.posts) == 1
    assert targets == 0


async def test_report_http_login_with_a_bad_port_answers_20008() -> None:
    """A login whose ``port`` is not 1-65535 answers 20008 (port error), issues no token and
    counts no failed login."""
    async with SimulatorServer(profile_config("s-series-v2", transport="HTTP")) as sim:
        async with httpx.AsyncClient(base_url=sim.base_url) as pbx:
            body = {
                "username": DEMO_USERNAME,
                "password": password_digest(DEMO_PASSWORD),
                "port": "70000",
            }
            answer = (await pbx.post("/api/v2.0.0/login", json=body)).json()
        stats = sim.state.stats
        live_tokens = sim.state.tokens.live_count(sim.state.now(), 1800)
    assert answer == {"status": "Failed", "errno": "20008"}
    assert (stats.logins_failed, stats.logins_succeeded, live_tokens) == (0, 0, 0)


async def test_report_drop_with_refusal_then_back() -> None:
    """``refuse_seconds`` closes new report connections on arrival (counted, no login read)
    until that time has passed on the simulator's clock; then a login works again."""
    async with SimulatorServer() as sim:
        first = await _logged_in(sim)
        async with httpx.AsyncClient(base_url=sim.base_url) as admin:
            dropped = await admin.post("/__simulator/live/report/drop", json={"refuse_seconds": 60})
        assert dropped.json() == {"dropped": 1}
        assert await first.closed()
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.report_port)
        # Closed before a login is read (a client that already sent one may see a reset).
        assert await asyncio.wait_for(reader.read(), WAIT) == b""
        writer.close()
        sim.state.advance_time(61)
        back = await _logged_in(sim)
        back.close()
        live = dict(sim.state.stats.live)
    assert (live["report_refused"], live["report_logins_succeeded"]) == (1, 2)
    assert live.get("report_logins_failed", 0) == 0
