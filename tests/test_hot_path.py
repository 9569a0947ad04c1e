"""The hot path: repeated reads answered in front of Starlette, with the full path's effect.

Two gateways run side by side against one simulated PBX and one fake clock, alike in
everything but the hot path (on in one, off in the other), and every request goes to
both in turn: hits, misses, GET and POST, each way of authenticating and failing to,
other scopes, CORS, conditional GETs, rate limits, malformed bodies. The answers must
be the same, status, headers (in order; only ``date`` differs) and body. Then counts: a
request the hot path answers never reaches the view, and the log and metrics see it
exactly as they see a request that went the full path.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, Final
from urllib.parse import urlencode

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Router

from gateway.app import GatewayApp, create_app
from gateway.demo import demo_settings
from gateway.graphql_view import GatewayGraphQL
from gateway.http import hot_path
from gateway.http.hot_path import HotPath
from gateway.observability.logs import configure_logging, direct_writer
from gateway.runtime import Runtime
from gateway.schema import GatewaySchema
from gateway.schema.compiled_plan import Plan
from gateway.secrets import Secret
from gateway.security.config import SecuritySettings
from gateway.security.gate import GraphQLGate
from gateway.security.identity import ALL_SCOPES, PINS, READ
from gateway.serving import LoopbackServer
from gateway.simulator import SimulatorServer
from tests.security_helpers import (
    anonymous_security,
    api_key_security,
    bearer,
    claims,
    jwt_verifier,
    sign,
    write_keys,
)
from tests.timing import FakeClock

WALL: Final = 'query Wall { conference(number: "6401") { name participantPassword } }'
ROOM: Final = "query Room($n: String!) { conference(number: $n) { number name moderatorPassword } }"
ORIGIN: Final = "https://wallboard.example"
GRAPHQL_RESPONSE: Final = "application/graphql-response+json"
ROOMS: Final = (
    "query Rooms($numbers: [String!]) "
    "{ conferences(numbers: $numbers) { number name participantPassword } }"
)
NAMES: Final = "query Names($numbers: [String]) { conferences(numbers: $numbers) { number name } }"
ONE: Final = "query One($n: String!) { conference(number: $n) { number name } }"
WALL_CLOCK: Final = 1_800_000_000.0
"""time.time() for the stale marks' fetchedAt: both gateways answer in the same second."""


@dataclasses.dataclass
class Twins:
    """Two gateways, the hot path on in ``on`` and off in ``off``, one PBX, one clock."""

    sim: SimulatorServer
    on: LoopbackServer
    off: LoopbackServer
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
    clock: FakeClock
    sent: int = 0

    @property
    def hot(self) -> HotPath:
        app: GatewayApp = self.on.app
        assert app.hot_path is not None
        return app.hot_path

    def runtime(self, server: LoopbackServer) -> Runtime:
        runtime: Runtime = server.app.runtime
        return runtime

    async def same(self, method: str, url: str = "/graphql", **kwargs: Any) -> httpx.Response:
        """Send one request to both; assert the same answer; return the hot path's."""
        on, off = [await client.request(method, url, **kwargs) for client in self.clients]
        self.sent += 1
        assert shape(on) == shape(off), (method, url, kwargs)
        return on

    async def post(self, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        """POST ``body`` (JSON-encoded unless bytes) with a JSON content type."""
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"content-type": "application/json", **(headers or {})}
        return await self.same("POST", content=content, headers=sent)

    async def get(self, params: dict[str, str], headers: dict[str, str] | None = None) -> Any:
        return await self.same("GET", "/graphql?" + urlencode(params), headers=headers)


async def in_parts(body: Any) -> AsyncIterator[bytes]:
    """``body`` as JSON, sent chunked in two parts."""
    data = json.dumps(body).encode()
    yield data[:10]
    await asyncio.sleep(0.01)
    yield data[10:]


async def too_many_headers(server: LoopbackServer, key: str) -> bytes:
    """A hot POST with more header fields than the connection guard allows, on a raw
    connection; what came back (the guard answers below any ASGI code)."""
    body = json.dumps({"query": WALL}).encode()
    fields = b"".join(b"x-%d: v\r\n" % i for i in range(150))
    head = b"POST /graphql HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n"
    head += b"x-api-key: %s\r\ncontent-length: %d\r\n" % (key.encode(), len(body))
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head + fields + b"\r\n" + body)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def shape(response: httpx.Response) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """What must match: the status, the headers in order but ``date``, the body."""
    headers = [(name.lower(), value) for name, value in response.headers.raw]
    return response.status_code, [h for h in headers if h[0] != b"date"], response.content


TwinFactory = Callable[..., Awaitable[Twins]]


@pytest.fixture
async def twins() -> AsyncIterator[TwinFactory]:
    """``await twins(security)``: the pair, with ``security`` and the demo's other settings
    (a fixed ETag key, so both tag an answer alike)."""
    async with AsyncExitStack() as exits:

        async def start(security: SecuritySettings, **overrides: Any) -> Twins:
            sim = await exits.enter_async_context(SimulatorServer())
            clock = FakeClock()
            settings = dataclasses.replace(
                demo_settings(sim.base_url),
                security=security,
                redis_token_key=Secret("the same ETag key for both"),
                **overrides,
            )
            servers = []
            for hot_path in (True, False):
                app = create_app(settings, clock=clock, hot_path=hot_path)
                server = await exits.enter_async_context(LoopbackServer(app))
                await server.app.runtime.session.started()
                servers.append(server)
            clients = [
                await exits.enter_async_context(httpx.AsyncClient(base_url=s.base_url))
                for s in servers
            ]
            return Twins(sim, servers[0], servers[1], (clients[0], clients[1]), clock)

        yield start


# --- the same answers ---------------------------------------------------------------------------


async def test_hot_path_answers_as_the_full_path_with_keys_cors_and_a_rate_limit(
    twins: TwinFactory, tmp_path: Any
) -> None:
    """API keys of two scopes, CORS, a request budget: every answer the same both ways,
    and the repeated reads answered by the hot path."""
    stored, plain = write_keys(tmp_path, {"pins": [READ, PINS], "reader": [READ]})
    security = api_key_security(
        stored, cors_origins=(ORIGIN,), rate=1.0, burst=60.0, max_body_bytes=8192
    )
    pair = await twins(security, revalidate_window=0)  # no refresh ahead of expiry
    pins, reader = {"x-api-key": plain["pins"]}, {"x-api-key": plain["reader"]}

    first = await pair.post({"query": WALL}, pins)  # a miss: both go the full path
    assert first.json()["data"]["conference"]["participantPassword"] == "3201"
    assert pair.hot.answered == 0
    await pair.post({"query": WALL}, pins)
    await pair.post({"query": WALL}, bearer(plain["pins"]))  # the key as a bearer token
    assert pair.hot.answered == 2
    # The same bytes from a key that may not read PINs: executed, never the kept answer.
    for _ in range(2):
        withheld = await pair.post({"query": WALL}, reader)
        assert withheld.json()["data"]["conference"]["participantPassword"] is None
        assert withheld.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert pair.hot.answered == 2
    for refused in ({}, {"x-api-key": "pbxgw_wrong"}, bearer("pbxgw_wrong")):
        assert (await pair.post({"query": WALL}, refused)).status_code == 401

    # Media types, and what is not acceptable or not JSON.
    for accept in ("application/json", GRAPHQL_RESPONSE, f"{GRAPHQL_RESPONSE}, */*;q=0.5"):
        assert (await pair.post({"query": WALL}, {**pins, "accept": accept})).status_code == 200
    assert (await pair.post({"query": WALL}, {**pins, "accept": "text/plain"})).status_code == 406
    for content_type in ("text/plain", "application/json; charset=latin-1"):
        answer = await pair.post({"query": WALL}, {**pins, "content-type": content_type})
        assert answer.status_code == 415
    assert pair.hot.answered == 5

    # Bodies: malformed, odd members, the same operation written differently.
    for body in (b"{", b"[]", b'"query"', b"\xff", {"query": 5}, {"query": WALL, "variables": "x"}):
        await pair.post(body, pins)
    await pair.post({"query": WALL, "operationName": 7}, pins)
    await pair.post({"query": WALL, "extensions": {"persistedQuery": {"version": 1}}}, pins)
    assert pair.hot.answered == 5
    await pair.post({"query": WALL, "extensions": {}, "operationName": ""}, pins)
    await pair.post({"query": WALL, "operationName": "Wall"}, pins)  # another key: a miss
    await pair.post({"query": WALL, "operationName": "Wall"}, pins)  # its plan's answer kept
    await pair.post({"query": WALL, "operationName": "Wall"}, pins)
    await pair.post({"variables": {"n": "6401"}, "query": ROOM}, pins)
    await pair.post({"query": ROOM, "variables": {"n": "6401"}}, pins)
    assert (await pair.post({"query": ROOM, "variables": {"n": "6401"}}, reader)).json()["errors"]
    assert pair.hot.answered == 8

    # GET: caching headers, conditional requests, variables in the URL.
    got = await pair.get({"query": WALL}, pins)
    etag = got.headers["etag"]
    assert got.headers["cache-control"] == "private, max-age=30"
    pair.clock.advance(12)
    assert (await pair.get({"query": WALL}, {**pins, "if-none-match": etag})).status_code == 304
    for tag in ("*", f'"x", {etag}', etag.removeprefix("W/")):
        assert (await pair.get({"query": WALL}, {**pins, "if-none-match": tag})).status_code == 304
    assert (await pair.get({"query": WALL}, {**pins, "if-none-match": '"x"'})).status_code == 200
    await pair.get({"query": ROOM, "variables": '{"n":"6401"}'}, pins)
    await pair.get({"query": ROOM, "variables": '{"n":'}, pins)
    await pair.get({"query": ROOM, "variables": "null", "operationName": ""}, pins)
    await pair.get({"query": WALL, "extensions": "{}"}, pins)
    await pair.get({"query": WALL}, {**pins, "accept": "text/html"})
    await pair.get({}, {**pins, "accept": "text/html"})  # the GraphiQL page (off here)
    assert pair.hot.answered == 15

    # CORS: a preflight, simple requests from the allowed origin and from another.
    await pair.same(
        "OPTIONS",
        headers={"origin": ORIGIN, "access-control-request-method": "POST"},
    )
    allowed = await pair.post({"query": WALL}, {**pins, "origin": ORIGIN})
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    other = await pair.post({"query": WALL}, {**pins, "origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    assert (await pair.get({"query": WALL}, {**pins, "origin": ORIGIN})).status_code == 200
    assert pair.hot.answered == 18

    # What the hot path hands on: a repeated header, a query string on a POST, HEAD, a
    # body over the limit, a header block the connection guard refuses.
    await pair.same(
        "POST",
        content=json.dumps({"query": WALL}).encode(),
        headers=[
            ("content-type", "application/json"),
            ("x-api-key", plain["reader"]),
            ("x-api-key", plain["pins"]),
        ],
    )
    await pair.same(
        "POST", "/graphql?query=x", json={"query": WALL}, headers={**pins, "accept": "*/*"}
    )
    await pair.same("HEAD", headers=pins)
    assert (await pair.post(b" " * 9000, pins)).status_code == 413
    assert (await pair.get({"query": WALL + " " * 9000}, pins)).status_code == 414
    guarded = [await too_many_headers(server, plain["pins"]) for server in (pair.on, pair.off)]
    assert guarded[0] == guarded[1] and guarded[0].startswith(b"HTTP/1.1 431")
    assert pair.hot.answered == 18
    json_pins = {**pins, "content-type": "application/json"}
    chunked = [  # a body sent in chunks: in one receive() or several, the same answer
        await client.post("/graphql", content=in_parts({"query": WALL}), headers=json_pins)
        for client in pair.clients
    ]
    assert shape(chunked[0]) == shape(chunked[1]) and chunked[0].status_code == 200

    # The request budget: both refuse at the same request, with the same Retry-After.
    statuses = [(await pair.post({"query": WALL}, pins)).status_code for _ in range(80)]
    assert statuses.count(429) > 0 and statuses[0] == 200
    rejected = [r.requests.rejected for r in map(pair.runtime, (pair.on, pair.off)) if r.requests]
    assert rejected[0] == rejected[1] > 0
    assert pair.hot.answered > 18  # the hits before the budget ran out
    assert statuses[-1] == 429
    assert (await pair.post({"query": WALL}, {**pins, "origin": ORIGIN})).status_code == 429
    pair.clock.advance(3)
    assert (await pair.post({"query": WALL}, pins)).status_code == 200

    # Expired data: both fetch again; then the hot path answers again.
    pair.clock.advance(31)
    before = pair.hot.answered
    await pair.post({"query": WALL}, pins)
    await pair.post({"query": WALL}, pins)
    assert pair.hot.answered == before + 1


async def test_hot_path_answers_as_the_full_path_for_anonymous_callers(
    twins: TwinFactory,
) -> None:
    """``GATEWAY_AUTH=none`` (the demo's and the benchmark's set-up): public caching, no
    budget, no CORS; and read-only anonymous callers never see another set-up's PINs."""
    pair = await twins(anonymous_security(ALL_SCOPES, rate=None))
    for _ in range(3):
        assert (await pair.post({"query": WALL})).json()["data"]["conference"]["name"]
    got = await pair.get({"query": WALL})
    assert got.headers["cache-control"] == "public, max-age=30"
    await pair.get({"query": WALL}, {"if-none-match": got.headers["etag"]})
    await pair.post({"query": WALL}, {"origin": ORIGIN})
    assert pair.hot.answered == 5

    readers = await twins(anonymous_security([READ], rate=None))
    for _ in range(2):
        answer = await readers.post({"query": WALL})
        assert answer.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert readers.hot.answered == 0


async def test_hot_path_answers_as_the_full_path_with_tokens(twins: TwinFactory) -> None:
    """JWTs: scopes from the token, an expired or forged token refused the same way."""
    pair = await twins(SecuritySettings(auth="jwt", jwt=jwt_verifier(), rate=None))
    pins = bearer(sign(claims(scope=f"{READ} {PINS}")))
    reader = bearer(sign(claims()))
    for headers in (pins, pins, reader, reader, pins):
        await pair.post({"query": WALL}, headers)
    assert pair.hot.answered == 2
    expired = bearer(sign(claims(scope=f"{READ} {PINS}", exp=1)))
    forged = bearer(sign(claims(scope=f"{READ} {PINS}"), label="someone-else"))
    for headers in (expired, forged, {"authorization": "Basic x"}):
        assert (await pair.post({"query": WALL}, headers)).status_code == 401
    assert pair.hot.answered == 2


# --- counts -------------------------------------------------------------------------------


async def test_hot_path_skips_the_view_but_not_the_log_or_the_metrics(
    twins: TwinFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Ten repeats of a read: the hot path answers nine without the view (strawberry is
    never called), and both gateways log one line per request and count the same."""
    reached: list[int] = []
    respond = GatewayGraphQL._respond

    async def counting(self: GatewayGraphQL, request: Request) -> Response:
        reached.append(request.url.port or 0)
        return await respond(self, request)

    monkeypatch.setattr(GatewayGraphQL, "_respond", counting)
    caplog.set_level(logging.INFO, logger="gateway.request")
    pair = await twins(anonymous_security(ALL_SCOPES, rate=None))
    for _ in range(10):
        await pair.post({"query": WALL})
    assert pair.hot.answered == 9
    assert reached.count(pair.on.port) == 1  # the first, a miss
    assert reached.count(pair.off.port) == 10
    lines = [r for r in caplog.records if r.name == "gateway.request"]
    fields = [getattr(r, "fields", {}) for r in lines]
    assert len(lines) == 20
    responses = [f for f in fields if f.get("cache") == "response"]
    assert len(responses) == 18
    # The kept answer logs the operation's name as its execution did, not the request's
    # absent ``operationName``.
    assert {(f["operation"], f["outcome"], f["client"], f["pbx_fetches"]) for f in fields} == {
        ("Wall", "ok", "anonymous@127.0.0.1", 0),
        ("Wall", "ok", "anonymous@127.0.0.1", 1),
    }
    samples = [figures(pair.runtime(server)) for server in (pair.on, pair.off)]
    assert samples[0] == samples[1]
    assert samples[0]["requests"] == 10 and samples[0]["observed"] == 10
    assert samples[0]["cached"] == 9


async def test_hot_path_writes_the_full_paths_log_line_as_serve_writes_it(
    twins: TwinFactory,
) -> None:
    """With ``serve``'s logging (the line formatted without a LogRecord, the writer
    thread), a read answered by the hot path logs the line the full path logs, but for
    the request id, the time and the duration."""
    buffer = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging("INFO", stream=buffer)
    ours = root.handlers[0]
    try:
        assert direct_writer(logging.getLogger("gateway.request")) is not None
        pair = await twins(anonymous_security(ALL_SCOPES, rate=None))
        seen: list[list[dict[str, Any]]] = []
        for client in pair.clients:
            for _ in range(3):
                await client.post("/graphql", json={"query": WALL})
            ours.flush()
            lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
            buffer.seek(0)
            buffer.truncate()
            seen.append([line for line in lines if line["logger"] == "gateway.request"])
    finally:
        ours.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    assert pair.hot.answered == 2
    varying = ("time", "request_id", "duration_ms")
    on, off = ([{k: v for k, v in line.items() if k not in varying} for line in s] for s in seen)
    assert on == off
    assert [line["cache"] for line in on] == ["miss", "response", "response"]
    assert all(set(line) >= set(varying) for line in seen[0])


async def test_hot_path_keeps_readings_of_answered_bodies_only_and_within_a_budget(
    twins: TwinFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body's reading is kept once the cache answered it (never a miss's, so no
    mutation's variables), and the readings stay within their byte budget however many
    distinct documents come: the oldest are dropped, and still answered right."""
    monkeypatch.setattr(hot_path, "READINGS_BYTES", 4_000)
    pair = await twins(anonymous_security(ALL_SCOPES, rate=None))
    await pair.post({"query": WALL})
    assert pair.hot.readings_bytes == 0  # a miss: nothing kept
    await pair.post({"query": WALL})
    assert pair.hot.readings_bytes > 0
    for i in range(30):  # each a new document (a comment makes it one), asked twice
        for _ in range(2):
            await pair.post({"query": f"{WALL} # {i}"})
            assert pair.hot.readings_bytes <= 4_000
    assert pair.hot.answered == 31
    await pair.post({"query": WALL})  # its reading was dropped long ago: read again
    assert pair.hot.answered == 32


# --- compiled plans below Starlette --------------------------------------------------------


def rooms(query: str, *numbers: str | None) -> dict[str, Any]:
    """A POST body asking ``query`` for ``numbers`` (variable ``numbers``)."""
    return {"query": query, "variables": {"numbers": list(numbers)}}


async def test_hot_path_answers_misses_with_compiled_plans_as_the_full_path(
    twins: TwinFactory, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads the response cache misses, answered by a compiled plan in front of Starlette
    (fresh, kept under the document's name, over GET with its caching headers, stale) or
    handed on (a document not yet validated, a room not in the store, bad or too many
    numbers, a scope missing for a PIN field, an empty request budget): every answer the
    same both ways, with keys of two scopes, CORS and a request budget."""
    monkeypatch.setattr("gateway.staleness.time.time", lambda: WALL_CLOCK)
    stored, plain = write_keys(tmp_path, {"pins": [READ, PINS], "reader": [READ]})
    security = api_key_security(stored, cors_origins=(ORIGIN,), rate=1.0, burst=120.0)
    pair = await twins(security, max_numbers=4)
    pins, reader = {"x-api-key": plain["pins"]}, {"x-api-key": plain["reader"]}
    plans = pair.runtime(pair.on)  # the on side's store, for its counts

    await pair.post({"query": "{ conferences { number } }"}, reader)  # every room stored
    # A document's first request validates it (strawberry, both ways): no plan yet.
    await pair.post(rooms(ROOMS, "6400", "6401"), pins)
    await pair.post(rooms(NAMES, "6400"), reader)
    assert (pair.hot.answered, pair.hot.compiled) == (0, 0)

    fetches = plans.store.stats.fetches
    for numbers in (["6402", "6403"], ["6404"], ["6405", "6402", "6405"], []):
        answer = await pair.post(rooms(ROOMS, *numbers), pins)
        assert "errors" not in answer.json()
    assert pair.hot.compiled == 4
    registry = pair.runtime(pair.on).metrics.registry
    assert registry.get_sample_value("gateway_response_cache_entries") == 3  # strawberry's 3
    # A compiled answer is kept the second time its key is seen, then served from there.
    assert (await pair.post(rooms(ROOMS, "6404"), pins)).status_code == 200  # kept now
    assert (pair.hot.answered, pair.hot.compiled) == (0, 5)
    assert (await pair.post(rooms(ROOMS, "6404"), pins)).status_code == 200  # a hit
    assert (pair.hot.answered, pair.hot.compiled) == (1, 5)
    for headers in (reader, {**reader, "accept": GRAPHQL_RESPONSE}, {**reader, "origin": ORIGIN}):
        await pair.post(rooms(NAMES, "6406", "6407"), headers)
    assert (pair.hot.answered, pair.hot.compiled) == (2, 7)  # seen, kept, then a hit
    assert plans.store.stats.fetches == fetches  # every room from the store

    # Handed on: a PIN field without the scope (FORBIDDEN), numbers that are not rooms'
    # or too many, a room the store has not seen (fetched, then known as no room).
    before = pair.hot.compiled
    withheld = await pair.post(rooms(ROOMS, "6408"), reader)
    assert withheld.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    for numbers in (["64a0"], ["6400", ""], ["6400", "6401", "6402", "6403", "6404"]):
        assert (await pair.post(rooms(NAMES, *numbers), reader)).json()["errors"]
    await pair.post(rooms(NAMES, "6406", None, "6407"), reader)  # a null item
    await pair.post(rooms(ROOMS, "6499", "6409"), pins)
    assert pair.hot.compiled == before
    await pair.post(rooms(ROOMS, "6499", "6410"), pins)  # 6499 is now known as no room
    assert pair.hot.compiled == before + 1
    await pair.post({"query": ROOMS, "variables": {"numbers": "6411"}}, pins)  # a list of one
    await pair.post({"query": ROOMS, "variables": {"numbers": 6411}}, pins)  # does not coerce
    await pair.post({"query": ONE, "variables": {"n": "6411"}}, reader)  # validates ONE
    await pair.post({"query": ONE, "variables": {}}, reader)  # a missing variable
    assert pair.hot.compiled == before + 2

    # A kept answer under the document's own name, for a request that sent none.
    for _ in range(2):  # seen, then kept
        await pair.post({**rooms(ROOMS, "6401", "6402"), "operationName": "Rooms"}, pins)
    kept = pair.hot.answered
    await pair.post(rooms(ROOMS, "6401", "6402"), pins)
    assert (pair.hot.answered, pair.hot.compiled) == (kept, before + 5)
    before += 1  # the second named request

    # GET: Cache-Control from the oldest room's age, ETag, 304.
    pair.clock.advance(10)
    url = {"query": NAMES, "variables": json.dumps({"numbers": ["6400", "6405"]})}
    got = await pair.get(url, reader)
    assert got.headers["cache-control"] == "private, max-age=20"
    assert pair.hot.compiled == before + 5
    url["variables"] = json.dumps({"numbers": ["6401", "6405"]})
    got = await pair.get(url, {**reader, "if-none-match": '"x"'})
    url["variables"] = json.dumps({"numbers": ["6405", "6401"]})
    await pair.get(url, {**reader, "if-none-match": got.headers["etag"]})  # another body
    url["variables"] = json.dumps({"numbers": ["6402", "6406"]})
    assert (await pair.get(url, {**reader, "if-none-match": "*"})).status_code == 304
    assert pair.hot.compiled == before + 8

    # Stale: past the TTL, served while refreshed (no-store, extensions.stale), each set
    # of rooms asked once, so neither gateway has its refresh back before it answers.
    pair.clock.advance(25)
    stale = await pair.post(rooms(ROOMS, "6400", "6403"), pins)
    assert stale.json()["extensions"]["stale"]
    url["variables"] = json.dumps({"numbers": ["6406", "6407"]})
    got = await pair.get(url, reader)
    assert got.headers["cache-control"] == "no-store" and got.json()["extensions"]["stale"]
    assert pair.hot.compiled == before + 10

    # The request budget: both refuse at the same request; a plan never runs for a
    # caller whose budget is empty.
    statuses = [(await pair.post(rooms(NAMES, "6400"), reader)).status_code for _ in range(130)]
    assert statuses[0] == 200 and statuses[-1] == 429
    runtimes = [pair.runtime(server) for server in (pair.on, pair.off)]
    rejected = [runtime.requests.rejected for runtime in runtimes if runtime.requests]
    assert rejected[0] == rejected[1] > 0
    compiled = pair.hot.compiled
    assert (await pair.post(rooms(NAMES, "6409"), reader)).status_code == 429
    assert pair.hot.compiled == compiled


async def test_compiled_answer_below_starlette_skips_routing_and_strawberry(
    twins: TwinFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A read a plan answers in the hot path never enters Starlette's routing, the gate or
    strawberry; the view's plan is not run again for one that fell back; and the log line
    and metrics are those of the full path's answer."""
    counts: dict[str, list[int]] = {"router": [], "gate": [], "execute": [], "plan": []}

    def counted(name: str, call: Any) -> Any:
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            counts[name].append(1)
            return await call(self, *args, **kwargs)

        return wrapper

    run = Plan.run

    def plan_run(self: Plan, *args: Any, **kwargs: Any) -> Any:
        counts["plan"].append(1)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(Plan, "run", plan_run)
    monkeypatch.setattr(Router, "__call__", counted("router", Router.__call__))
    monkeypatch.setattr(GraphQLGate, "__call__", counted("gate", GraphQLGate.__call__))
    monkeypatch.setattr(GatewaySchema, "execute", counted("execute", GatewaySchema.execute))
    caplog.set_level(logging.INFO, logger="gateway.request")
    pair = await twins(anonymous_security(ALL_SCOPES, rate=None))
    await pair.post({"query": "{ conferences { number } }"})
    await pair.post(rooms(NAMES, "6400"))  # validates the document, both ways
    for key in counts:
        counts[key].clear()

    lines: list[list[dict[str, Any]]] = []
    for index in range(10):
        before = len(caplog.records)
        answer = await pair.post(rooms(NAMES, f"64{index + 1:02d}", "6400"))
        assert [room["number"] for room in answer.json()["data"]["conferences"]][1] == "6400"
        records = [r for r in caplog.records[before:] if r.name == "gateway.request"]
        lines.append([getattr(r, "fields", {}) for r in records])
    assert pair.hot.compiled == 10
    # Only the full-path twin routed and gated; neither executed (a plan ran on each side).
    assert (len(counts["router"]), len(counts["gate"]), len(counts["execute"])) == (10, 10, 0)
    assert len(counts["plan"]) == 20
    varying = ("request_id", "duration_ms")
    for on, off in lines:
        assert {k: v for k, v in on.items() if k not in varying} == {
            k: v for k, v in off.items() if k not in varying
        }
        assert (on["operation"], on["cache"], on["outcome"]) == ("Names", "hit", "ok")
    samples = [names_figures(pair.runtime(server)) for server in (pair.on, pair.off)]
    assert samples[0] == samples[1] and samples[0]["requests"] == 11

    # A plan that falls back (a bad number): run once on each side (in the hot path, not
    # again in the view), then strawberry answers, both ways.
    await pair.post(rooms(NAMES, "64a0"))
    assert len(counts["execute"]) == 2 and pair.hot.compiled == 10
    assert len(counts["plan"]) == 22


def names_figures(runtime: Runtime) -> dict[str, float]:
    """The request metrics a compiled read of ``Names`` moves."""
    registry = runtime.metrics.registry
    labels = {"operation": "Names", "outcome": "ok"}
    return {
        "requests": registry.get_sample_value("gateway_graphql_requests_total", labels) or 0.0,
        "observed": registry.get_sample_value(
            "gateway_graphql_request_duration_seconds_count", {"operation": "Names"}
        )
        or 0.0,
    }


def figures(runtime: Runtime) -> dict[str, float]:
    """The request metrics a hot read moves."""
    registry = runtime.metrics.registry

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    return {
        "requests": value("gateway_graphql_requests_total", operation="Wall", outcome="ok"),
        "observed": value("gateway_graphql_request_duration_seconds_count", operation="Wall"),
        "cached": value("gateway_response_cache_hits_total"),
    }
