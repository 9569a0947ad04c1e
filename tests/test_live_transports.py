"""Subscriptions over their two transports, end to end: a real WebSocket client
(``websockets``, graphql-transport-ws) and a real streaming HTTP client (httpx, the
multipart subscription protocol) against the gateway and the simulated PBX on loopback.

Members join and leave through the simulator's admin API (``/__simulator/live/...``).
Until a source (the PBX's report channel, or the poller) runs in the gateway, nothing
tells the feed of a change by itself: these tests read the PBX's rooms as a source would
(one ``query_in_session``) and hand them to the feed's sink method (:func:`_tell_feed`).
Moderator actions reach subscribers without that: the mutation asks the feed to re-read.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from gateway.error_code import ErrorCode
from gateway.errors import ConfigError
from gateway.examples import BUNDLE, WEB_EXAMPLE_DIR
from gateway.pbx.sessions_query import LiveSession
from gateway.security.identity import MODERATE, READ, WRITE
from gateway.settings import LiveTransportLimits, Settings
from gateway.subscriptions.multipart import wants_multipart
from tests.gateway_stack import Stack, StackFactory
from tests.live_clients import (
    APOLLO_ACCEPT,
    BOUND,
    URQL_ACCEPT,
    WATCH,
    Frames,
    Ws,
)
from tests.live_clients import admin as _admin
from tests.live_clients import connect_ws as _ws
from tests.live_clients import members as _members
from tests.live_clients import multipart_stream as _multipart
from tests.live_helpers import listing
from tests.processes import one_process_at_a_time
from tests.security_helpers import (
    api_key_security,
    bearer,
    claims,
    jwt_verifier,
    sign,
    write_keys,
)

ROOT: Final = Path(__file__).resolve().parent.parent
BRIDGE: Final = "6403"  # moderators 4000 and 4001 (the simulator's default rooms)
IDLE: Final = "6401"


@pytest.fixture
def frames() -> Frames:
    return Frames()


# --- the simulator and the feed ---------------------------------------------------------


async def _tell_feed(stack: Stack, *numbers: str) -> None:
    """What a source would do: read the rooms (one query_in_session), tell the feed."""
    runtime = stack.gateway_runtime()
    assert runtime.feed is not None
    runtime.feed.rooms_listed(await listing(runtime), list(numbers))


def _keys(tmp_path: Path, **scopes: Iterable[str]) -> tuple[Any, dict[str, str]]:
    stored, plain = write_keys(tmp_path, {name: set(given) for name, given in scopes.items()})
    return api_key_security(stored), plain


async def _keyed_stack(
    gateway_stack: StackFactory, tmp_path: Path, **overrides: Any
) -> tuple[Stack, dict[str, str]]:
    security, plain = _keys(tmp_path, reader={READ}, writer={WRITE}, moderator={READ, MODERATE})
    stack = await gateway_stack(security=security, **overrides)
    return stack, plain


# --- join and leave, over both transports -------------------------------------------------


async def test_ws_initial_then_changed_on_join_and_leave(
    gateway_stack: StackFactory, tmp_path: Path, frames: Frames
) -> None:
    """The key in connection_init; INITIAL (nobody), then CHANGED on a join and on a leave;
    the subscription ends with the connection."""
    stack, keys = await _keyed_stack(gateway_stack, tmp_path)
    ws = await _ws(stack, frames)
    assert await ws.init({"authorization": f"Bearer {keys['reader']}"}) == {
        "type": "connection_ack"
    }
    await ws.subscribe("1", [IDLE])
    first = await ws.update("1")
    assert (first["number"], first["reason"], first["session"]) == (IDLE, "INITIAL", None)

    await _admin(stack, "join", number=IDLE, member="4009")
    await _tell_feed(stack, IDLE)
    joined = await ws.update("1")
    assert (joined["reason"], _members(joined)) == ("CHANGED", ["4009"])
    assert joined["session"]["participants"][0]["status"] == "JOINED"

    await _admin(stack, "leave", number=IDLE, member="4009")
    await _tell_feed(stack, IDLE)
    left = await ws.update("1")
    assert (left["reason"], left["session"]) == ("CHANGED", None)

    feed = stack.gateway_runtime().feed
    assert feed is not None and feed.subscribers == 1
    await ws.connection.close()
    for _ in range(200):  # the server notices the close within a few loop turns
        if feed.subscribers == 0:
            break
        await asyncio.sleep(0.01)
    assert feed.subscribers == 0
    assert stack.gateway.app.runtime is not None
    frames.check_clean(stack)


@pytest.mark.parametrize("accept", [URQL_ACCEPT, APOLLO_ACCEPT], ids=["urql", "apollo"])
async def test_multipart_initial_then_changed_on_join_and_leave(
    gateway_stack: StackFactory, tmp_path: Path, frames: Frames, accept: str
) -> None:
    """urql's and Apollo's Accept both get the multipart stream, authenticated by the
    request's header: INITIAL first (never a heartbeat: urql would end the subscription),
    then CHANGED on a join and a leave; headers that keep caches and proxies from holding
    parts back."""
    stack, keys = await _keyed_stack(gateway_stack, tmp_path)
    key = {"x-api-key": keys["reader"]}
    async with _multipart(stack, frames, [IDLE], accept=accept, headers=key) as stream:
        headers = stream.response.headers
        assert stream.response.status_code == 200
        assert headers["content-type"].startswith("multipart/mixed;boundary=graphql")
        assert "subscriptionSpec=1.0" in headers["content-type"]
        assert headers["cache-control"] == "no-store"
        assert headers["x-accel-buffering"] == "no"
        opening = await stream.part()
        assert opening is not None and opening != {}  # a payload first, never a heartbeat
        first = opening["payload"]["data"]["conferenceSessions"]
        assert (first["number"], first["reason"], first["session"]) == (IDLE, "INITIAL", None)

        await _admin(stack, "join", number=IDLE, member="4010")
        await _tell_feed(stack, IDLE)
        joined = await stream.update()
        assert (joined["reason"], _members(joined)) == ("CHANGED", ["4010"])

        await _admin(stack, "leave", number=IDLE, member="4010")
        await _tell_feed(stack, IDLE)
        assert (await stream.update())["session"] is None
    view_slots = _slots(stack)
    for _ in range(200):
        if not view_slots.held:
            break
        await asyncio.sleep(0.01)
    assert not view_slots.held  # the stream's slot was given back when it ended
    feed = stack.gateway_runtime().feed
    for _ in range(200):
        if feed.subscribers == 0:
            break
        await asyncio.sleep(0.01)
    assert feed.subscribers == 0  # and the feed forgot the subscriber
    frames.check_clean(stack)


async def test_multipart_query_accept_stays_json(gateway_stack: StackFactory) -> None:
    """urql's Accept for queries names multipart last, after JSON: answered as JSON, not as
    a stream; a subscription over plain JSON is refused with a code."""
    stack = await gateway_stack()
    urql_query = (
        "application/graphql-response+json, application/graphql+json, application/json, "
        "text/event-stream, multipart/mixed"
    )
    answer = await stack.client.post(
        "/graphql", json={"query": "{ conferences { number } }"}, headers={"accept": urql_query}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/graphql-response+json")
    assert answer.json()["data"]["conferences"]
    refused = await stack.client.post(
        "/graphql", json={"query": WATCH, "variables": {"numbers": [IDLE]}}
    )
    codes = [e["extensions"]["code"] for e in refused.json()["errors"]]
    assert codes and all(codes), refused.text


async def test_multipart_stream_of_a_query_or_nothing_is_a_coded_bad_request(
    gateway_stack: StackFactory,
) -> None:
    """A stream asked for a query, or for no document at all, ends with one coded
    BAD_REQUEST part (it was an INTERNAL_ERROR, logged as a bug)."""
    stack = await gateway_stack()
    asks = [
        ("GET", {}, None),
        ("GET", {"query": "{ __typename }"}, None),
        ("POST", None, {"query": "{ conferences { number } }"}),
    ]
    for method, params, body in asks:
        answer = await stack.client.request(
            method, "/graphql", params=params, json=body, headers={"accept": "multipart/mixed"}
        )
        assert answer.status_code == 200
        assert '"code":"BAD_REQUEST"' in answer.text, answer.text
        assert "INTERNAL_ERROR" not in answer.text


URQL_CLIENT: Final = """
import { Client, fetchExchange } from "%(bundle)s";
const client = new Client({
  url: process.argv[2], exchanges: [fetchExchange], fetchSubscriptions: true,
  fetchOptions: { headers: { "x-api-key": process.argv[3] } },
});
let seen = 0;
const { unsubscribe } = client.subscription(process.argv[4], {}).subscribe((result) => {
  const error = result.error ? String(result.error) : null;
  console.log(JSON.stringify({ data: result.data, error }));
  if (++seen === 2) { unsubscribe(); process.exit(0); }
});
"""


@pytest.fixture(scope="module")
def urql_bundle() -> Path:
    """The web example's urql 6 bundle (the page's own client), built if missing."""
    with one_process_at_a_time(WEB_EXAMPLE_DIR):  # each pytest-xdist worker may get here
        if not (WEB_EXAMPLE_DIR / BUNDLE).is_file():
            subprocess.run(  # noqa: S603 (our own script, fixed arguments)
                [sys.executable, str(ROOT / "scripts" / "build-web-example")],
                check=True,
                timeout=600,
            )
    return WEB_EXAMPLE_DIR / BUNDLE


async def test_urql_fetch_subscriptions_gets_a_working_stream(
    gateway_stack: StackFactory, tmp_path: Path, urql_bundle: Path
) -> None:
    """urql 6's own client, as the web example runs it (``fetchSubscriptions``), in Node:
    it receives INITIAL, then the join as CHANGED, with no error."""
    stack, keys = await _keyed_stack(gateway_stack, tmp_path)
    script = tmp_path / "client.mjs"
    script.write_text(URQL_CLIENT % {"bundle": urql_bundle.as_uri()})
    node = shutil.which("node")
    assert node is not None, "node is needed (make system-deps installs it)"
    watch = f'subscription {{ conferenceSessions(numbers: ["{IDLE}"]) {{ number reason }} }}'
    client = await asyncio.create_subprocess_exec(
        node, str(script), f"{stack.gateway.base_url}/graphql", keys["reader"], watch,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert client.stdout is not None
    try:
        first = json.loads(await asyncio.wait_for(client.stdout.readline(), BOUND))
        assert first == {
            "data": {"conferenceSessions": {"number": IDLE, "reason": "INITIAL"}},
            "error": None,
        }
        await _admin(stack, "join", number=IDLE, member="4012")
        await _tell_feed(stack, IDLE)
        second = json.loads(await asyncio.wait_for(client.stdout.readline(), BOUND))
        assert second == {
            "data": {"conferenceSessions": {"number": IDLE, "reason": "CHANGED"}},
            "error": None,
        }
        assert await asyncio.wait_for(client.wait(), BOUND) == 0
    finally:
        if client.returncode is None:
            client.kill()
            await client.wait()


# --- moderator actions ----------------------------------------------------------------------


async def test_ws_subscriber_sees_kick_and_invite_and_mute_changes_nothing(
    gateway_stack: StackFactory, tmp_path: Path, frames: Frames
) -> None:
    """A moderator removes and invites through the gateway: the subscriber sees each change
    (the mutation makes the feed re-read the room). A mute changes no participant field the
    schema shows, so it sends nothing: the next update is the next join."""
    stack, keys = await _keyed_stack(gateway_stack, tmp_path)
    for member in ("4001", "4009"):
        await _admin(stack, "join", number=BRIDGE, member=member)
    ws = await _ws(stack, frames)
    await ws.init({"x-api-key": keys["reader"]})
    await ws.subscribe("s", [BRIDGE])
    assert _members(await ws.update("s")) == ["4001", "4009"]

    moderator = {"X-API-Key": keys["moderator"]}

    async def act(field: str, input_type: str, **fields: Any) -> None:
        document = f"mutation Act($input: {input_type}!) {{ {field}(input: $input) {{ number }} }}"
        result = await stack.graphql(document, {"input": fields}, headers=moderator)
        assert "errors" not in result, result

    members = "ConferenceParticipantsInput"
    await act("muteParticipants", members, number=BRIDGE, operator="4001", members=["4009"])
    await act("removeParticipants", members, number=BRIDGE, operator="4001", members=["4009"])
    removed = await ws.update("s")
    assert (removed["reason"], _members(removed)) == ("CHANGED", ["4001"])

    invite = "InviteParticipantsInput"
    await act("inviteParticipants", invite, number=BRIDGE, operator="4001", members=["4020"])
    invited = await ws.update("s")  # the simulator's invitees pick up at once
    assert (invited["reason"], _members(invited)) == ("CHANGED", ["4001", "4020"])
    statuses = {p["number"]: p["status"] for p in invited["session"]["participants"]}
    assert statuses == {"4001": "JOINED", "4020": "INVITED"}
    frames.check_clean(stack)


# --- authentication and scopes --------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [{}, {"x-api-key": "not-a-key"}, {"authorization": "Bearer nope"}, {"x-api-key": 42}],
    ids=["missing", "wrong-key", "wrong-bearer", "not-a-string"],
)
async def test_ws_auth_missing_or_wrong_closes_4401_and_subscribes_nothing(
    gateway_stack: StackFactory, tmp_path: Path, frames: Frames, payload: dict[str, Any]
) -> None:
    stack, _ = await _keyed_stack(gateway_stack, tmp_path)
    ws = await _ws(stack, frames)
    await ws.send({"type": "connection_init", "payload": payload})
    await ws.subscribe("1", [IDLE])
    code, reason = await ws.closed_with()
    assert code == 4401 and reason.startswith("Unauthorized")
    feed = stack.gateway_runtime().feed
    assert feed is not None and feed.subscribers == 0
    assert stack.calls("conference/query_in_session") == 0
    frames.check_clean(stack)


async def test_ws_failed_auth_is_charged_to_the_address_budget(
    gateway_stack: StackFactory, tmp_path: Path, frames: Frames
) -> None:
    """As over HTTP: an address's failed authentications have a budget (20 at once); past
    it, even the right key waits, and the close says so."""
    stack, _ = await _keyed_stack(gateway_stack, tmp_path)
    reasons = []
    for _ in range(21):
        ws = await _ws(stack, frames)
        await ws.send({"type": "connection_init", "payload": {"x-api-key": "wrong"}})
        reasons.append(await ws.closed_with())
    assert all(code == 4401 for code, _ in reasons)
    assert "too many failed authentications" not in reasons[0][1]
    assert "too many failed authentications" in reasons[-1][1]


async def test_ws_upgrade_headers_authenticate_and_subscribe_before_init_is_refused(
    gateway_stack: StackFactory, tmp_path: Path, frames: Frames
) -> None:
    stack, keys = await _keyed_stack(gateway_stack, tmp_path)
    ws = await _ws(stack, frames, headers={"X-API-Key": keys["reader"]})
    assert (await ws.init())["type"] == "connection_ack"
    await ws.subscribe("1", [IDLE])
    assert (await ws.update("1"))["reason"] == "INITIAL"

    early = await _ws(stack, frames, headers={"X-API-Key": keys["reader"]})
    await early.subscribe("1", [IDLE])
    assert (await early.closed_with())[0] == 4401


async def test_ws_closes_4401_when_its_jwt_expires(
    gateway_stack: StackFactory, frames: Frames
) -> None:
    """A WebSocket authenticated by a JWT lives as long as the token: at its exp (plus the
    leeway) it is closed 4401, as HTTP would refuse the token from then on."""
    verifier = jwt_verifier(leeway=0.0)
    security = dataclasses.replace(api_key_security(()), auth="jwt", jwt=verifier)
    stack = await gateway_stack(security=security)
    token = sign(claims(exp=int(time.time()) + 2))
    ws = await _ws(stack, frames)
    assert (await ws.init({"authorization": f"Bearer {token}"}))["type"] == "connection_ack"
    await ws.subscribe("1", [IDLE])
    assert (await ws.update("1"))["reason"] == "INITIAL"
    code, reason = await ws.closed_with()
    assert (code, reason) == (4401, "Unauthorized: the bearer token has expired")


async def test_multipart_stream_ends_when_its_jwt_expires(
    gateway_stack: StackFactory, frames: Frames
) -> None:
    """A multipart stream opened with a JWT ends at the token's exp (plus the leeway): a
    last part UNAUTHENTICATED, then the closing boundary; the subscription is freed."""
    verifier = jwt_verifier(leeway=0.0)
    security = dataclasses.replace(api_key_security(()), auth="jwt", jwt=verifier)
    stack = await gateway_stack(security=security)
    token = sign(claims(exp=int(time.time()) + 2))
    async with _multipart(stack, frames, [IDLE], headers=bearer(token)) as stream:
        assert (await stream.update())["reason"] == "INITIAL"
        parts = []
        while (part := await stream.part()) is not None:
            parts.append(part)
    assert parts[-1]["payload"] is None
    assert parts[-1]["errors"][0]["extensions"]["code"] == ErrorCode.UNAUTHENTICATED
    feed = stack.gateway_runtime().feed
    for _ in range(200):
        if feed.subscribers == 0 and not _slots(stack).held:
            break
        await asyncio.sleep(0.01)
    assert feed.subscribers == 0 and not _slots(stack).held


async def test_ws_without_connection_init_is_closed_4408(
    gateway_stack: StackFactory, frames: Frames
) -> None:
    stack = await gateway_stack(live_transport=LiveTransportLimits(init_timeout=0.2))
    ws = await _ws(stack, frames)
    assert (await ws.closed_with())[0] == 4408


async def test_scope_missing_is_an_error_for_that_subscription(
    gateway_stack: StackFactory, tmp_path: Path, frames: Frames
) -> None:
    """A key without conferences:read is authenticated, but its subscription is refused
    with FORBIDDEN: over the WebSocket an error for that id, over multipart one part with
    the error, then the end. No PBX call."""
    stack, keys = await _keyed_stack(gateway_stack, tmp_path)
    ws = await _ws(stack, frames)
    await ws.init({"x-api-key": keys["writer"]})
    await ws.subscribe("1", [IDLE])
    message = await ws.receive()
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert [e["extensions"]["code"] for e in errors] == [ErrorCode.FORBIDDEN]

    key = {"x-api-key": keys["writer"]}
    async with _multipart(stack, frames, [IDLE], headers=key) as stream:
        parts = []
        while (part := await stream.part()) is not None:
            parts.append(part)
    assert len(parts) == 1, parts  # the refusal, then the end
    assert [e["extensions"]["code"] for e in parts[0]["payload"]["errors"]] == [ErrorCode.FORBIDDEN]
    assert stack.calls("conference/query_in_session") == 0


# --- limits ---------------------------------------------------------------------------------


def _slots(stack: Stack) -> Any:
    """The view's per-identity subscription slots."""
    route = next(r for r in stack.gateway.app.routes if getattr(r, "path", "") == "/graphql")
    return route.app._app.subscriptions  # the gate wraps the view


async def test_limits_per_connection_and_per_identity(
    gateway_stack: StackFactory, tmp_path: Path, frames: Frames
) -> None:
    """Two operations per connection, three per caller over every connection and transport:
    the next subscribe gets an error coded TOO_MANY_SUBSCRIPTIONS (and a multipart stream a
    429); completing one gives its place back."""
    limits = LiveTransportLimits(max_per_connection=2, max_per_identity=3)
    stack, keys = await _keyed_stack(gateway_stack, tmp_path, live_transport=limits)
    auth = {"x-api-key": keys["reader"]}
    one, two = await _ws(stack, frames), await _ws(stack, frames)
    await one.init(auth)
    await two.init(auth)
    for operation_id in ("a", "b"):
        await one.subscribe(operation_id, [IDLE])
        assert (await one.update(operation_id))["reason"] == "INITIAL"
    await one.subscribe("c", [IDLE])
    refused = await one.receive()
    assert (refused["type"], refused["id"]) == ("error", "c")
    assert refused["payload"][0]["extensions"]["code"] == ErrorCode.TOO_MANY_SUBSCRIPTIONS
    assert "PER_CONNECTION" in refused["payload"][0]["message"]

    await two.subscribe("d", [IDLE])
    assert (await two.update("d"))["reason"] == "INITIAL"
    await two.subscribe("e", [IDLE])
    refused = await two.receive()
    assert refused["payload"][0]["extensions"]["code"] == ErrorCode.TOO_MANY_SUBSCRIPTIONS
    assert "PER_IDENTITY" in refused["payload"][0]["message"]
    body = {"query": WATCH, "variables": {"numbers": [IDLE]}}
    streamed = await stack.client.post(
        "/graphql", json=body, headers={"accept": URQL_ACCEPT, **auth}
    )
    assert streamed.status_code == 429
    assert streamed.json()["errors"][0]["extensions"]["code"] == ErrorCode.TOO_MANY_SUBSCRIPTIONS
    assert _slots(stack).held == {"reader": 3}

    await one.send({"id": "a", "type": "complete"})
    for _ in range(200):
        if _slots(stack).held == {"reader": 2}:
            break
        await asyncio.sleep(0.01)
    await two.subscribe("e", [IDLE])
    assert (await two.update("e"))["reason"] == "INITIAL"
    await one.connection.close()
    await two.connection.close()
    for _ in range(200):
        if not _slots(stack).held:
            break
        await asyncio.sleep(0.01)
    assert not _slots(stack).held


async def test_ws_each_subscribe_is_charged_to_the_request_budget(
    gateway_stack: StackFactory, frames: Frames
) -> None:
    """With GATEWAY_RATE_LIMIT set, each subscribe costs one request of the caller's budget,
    as an HTTP request does; past it: an error coded RATE_LIMITED, the connection open."""
    stack = await gateway_stack()
    limited = dataclasses.replace(stack.gateway_runtime().settings.security, rate=0.001, burst=2.0)
    stack = await gateway_stack(security=limited)
    ws = await _ws(stack, frames)
    await ws.init()
    for operation_id in ("1", "2"):
        await ws.subscribe(operation_id, [IDLE])
        assert (await ws.update(operation_id))["reason"] == "INITIAL"
    await ws.subscribe("3", [IDLE])
    refused = await ws.receive()
    assert (refused["type"], refused["id"]) == ("error", "3")
    assert refused["payload"][0]["extensions"]["code"] == ErrorCode.RATE_LIMITED
    await ws.send({"type": "ping"})
    assert await ws.receive() == {"type": "pong"}


async def test_ws_message_size_is_bounded(gateway_stack: StackFactory, frames: Frames) -> None:
    """A message past GATEWAY_LIVE_MAX_MESSAGE_BYTES closes the connection 1009 (too big)
    before anything reads it."""
    limits = LiveTransportLimits(max_message_bytes=2048)
    stack = await gateway_stack(live_transport=limits)
    ws = await _ws(stack, frames)
    await ws.init()
    await ws.subscribe("1", [IDLE], query="{ conferences { number } }" + " " * 4096)
    assert (await ws.closed_with())[0] == 1009
    assert (await stack.client.get("/healthz")).status_code == 200


async def test_ws_documents_pass_the_same_budget_and_validation_as_http(
    gateway_stack: StackFactory, frames: Frames
) -> None:
    """A query over the WebSocket runs like one over HTTP (next, complete); a document over
    the size limits, one that does not parse, and one that does not validate are each
    answered with a coded error, and the connection stays open."""
    stack = await gateway_stack()
    ws = await _ws(stack, frames)
    await ws.init()
    await ws.subscribe("q", query="{ conferences { number } }")
    answer = await ws.receive()
    assert answer["type"] == "next" and answer["payload"]["data"]["conferences"]
    assert await ws.receive() == {"id": "q", "type": "complete"}

    deep = "subscription { conferenceSessions { " + "session { " * 30 + "}" * 31 + " }"
    cases = {
        "big": ("{ " + " ".join(f"a{i}: conferences {{ number }}" for i in range(400)) + " }"),
        "deep": deep,
        "syntax": "subscription {",
        "invalid": "subscription { conferenceSessions { nosuchfield } }",
    }
    expected = {
        "big": ErrorCode.OPERATION_TOO_LARGE,
        "deep": ErrorCode.OPERATION_TOO_LARGE,
        "syntax": ErrorCode.GRAPHQL_PARSE_FAILED,
        "invalid": ErrorCode.GRAPHQL_VALIDATION_FAILED,
    }
    for operation_id, query in cases.items():
        await ws.subscribe(operation_id, query=query)
        message = await ws.receive()
        assert (message["type"], message["id"]) == ("error", operation_id), message
        codes = {error["extensions"]["code"] for error in message["payload"]}
        assert expected[operation_id] in codes, message
    await ws.subscribe("again", [IDLE])
    assert (await ws.update("again"))["reason"] == "INITIAL"


async def test_ws_persisted_only_runs_registered_documents_only(
    gateway_stack: StackFactory, frames: Frames
) -> None:
    """GATEWAY_PERSISTED_ONLY holds over the WebSocket too: a document not registered is
    refused (PERSISTED_QUERY_NOT_ALLOWED), a registered one runs, by its text or its hash."""
    registered = WATCH
    sha = hashlib.sha256(registered.encode()).hexdigest()
    stack = await gateway_stack()
    security = dataclasses.replace(
        stack.gateway_runtime().settings.security,
        persisted_only=True,
        persisted_documents={sha: registered},
    )
    locked = await gateway_stack(security=security)
    ws = await _ws(locked, frames)
    await ws.init()
    await ws.subscribe("free", query="{ conferences { number } }")
    refused = await ws.receive()
    assert (refused["type"], refused["id"]) == ("error", "free")
    assert refused["payload"][0]["extensions"]["code"] == ErrorCode.PERSISTED_QUERY_NOT_ALLOWED
    await ws.subscribe("text", [IDLE], query=registered)
    assert (await ws.update("text"))["reason"] == "INITIAL"
    by_hash = {
        "variables": {"numbers": [IDLE]},
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha}},
    }
    await ws.send({"id": "hash", "type": "subscribe", "payload": by_hash})
    assert (await ws.update("hash"))["reason"] == "INITIAL"


# --- keep-alive -----------------------------------------------------------------------------


async def test_keepalive_pings_and_heartbeats(gateway_stack: StackFactory, frames: Frames) -> None:
    """A ping per interval on the WebSocket (answered, they go on; unanswered for two
    intervals, the connection is closed 1011); {} heartbeats on a multipart stream."""
    stack = await gateway_stack(live_transport=LiveTransportLimits(keepalive=0.25))
    answering = await _ws(stack, frames)
    await answering.init()
    for _ in range(3):
        assert await answering.receive() == {"type": "ping"}
        await answering.send({"type": "pong"})

    silent = await _ws(stack, frames)
    await silent.init()
    code, reason = await silent.closed_with()
    assert (code, reason) == (1011, "keep-alive timeout")
    assert await answering.receive() == {"type": "ping"}  # the answering one is still open

    async with _multipart(stack, frames, [IDLE]) as stream:
        parts = [await stream.part() for _ in range(4)]
        assert parts[0] != {}  # INITIAL first: urql would end on a heartbeat there
        assert parts[1:] == [{}, {}, {}]  # then one per interval (the room stays idle)


async def test_multipart_first_part_is_the_update_even_when_the_pbx_is_slow(
    gateway_stack: StackFactory, frames: Frames
) -> None:
    """The PBX answers the first read after several keep-alive intervals: the heartbeats
    due meanwhile are not sent before INITIAL (urql would end the subscription on one)."""
    stack = await gateway_stack(live_transport=LiveTransportLimits(keepalive=0.05))
    stack.pbx.stall_next(1, seconds=0.5, endpoint="conference/query_in_session")
    async with _multipart(stack, frames, [IDLE]) as stream:
        first = await stream.part()
        assert first is not None and first != {}
        assert first["payload"]["data"]["conferenceSessions"]["reason"] == "INITIAL"
        assert await stream.part() == {}  # the heartbeats go on after it
    assert stack.calls("conference/query_in_session") == 1


# --- slow consumers -------------------------------------------------------------------------


def _flood(stack: Stack, number: str, session: LiveSession, times: int) -> None:
    """``times`` changes of the room in one go, before any subscriber can read one."""
    feed = stack.gateway_runtime().feed
    assert feed is not None
    for turn in range(times):
        feed.room_changed(number, session if turn % 2 == 0 else None)


async def _busy_session(stack: Stack, number: str) -> LiveSession:
    await _admin(stack, "join", number=number, member="4011")
    session = (await listing(stack.gateway_runtime()))[number]
    await _admin(stack, "leave", number=number, member="4011")
    return session


async def test_slow_consumer_is_closed_with_slow_consumer(
    gateway_stack: StackFactory, frames: Frames
) -> None:
    """A subscriber that falls more than GATEWAY_LIVE_BUFFER updates behind: on the
    WebSocket a final error SLOW_CONSUMER then close 1013; on a multipart stream a final
    part with the error then the end. The gateway goes on answering."""
    stack = await gateway_stack(live_buffer=2)
    session = await _busy_session(stack, IDLE)
    ws = await _ws(stack, frames)
    await ws.init()
    await ws.subscribe("slow", [IDLE])
    assert (await ws.update("slow"))["reason"] == "INITIAL"
    _flood(stack, IDLE, session, 6)
    messages = []
    try:
        while True:
            messages.append(await ws.receive())
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        assert closed.rcvd.code == 1013
    final = messages[-1]
    assert (final["type"], final["id"]) == ("error", "slow")
    assert final["payload"][0]["extensions"]["code"] == ErrorCode.SLOW_CONSUMER

    async with _multipart(stack, frames, [IDLE]) as stream:
        assert (await stream.update())["reason"] == "INITIAL"
        _flood(stack, IDLE, session, 6)
        parts = []
        while (part := await stream.part()) is not None:
            parts.append(part)
        assert parts[-1]["payload"] is None
        assert parts[-1]["errors"][0]["extensions"]["code"] == ErrorCode.SLOW_CONSUMER

    assert (await stack.client.get("/healthz")).status_code == 200
    result = await stack.graphql("{ conferences { number } }")
    assert result["data"]["conferences"]
    frames.check_clean(stack)


# --- the connection guard -------------------------------------------------------------------


async def test_ws_connections_count_in_the_guard(
    gateway_stack: StackFactory, frames: Frames
) -> None:
    """600 idle WebSockets from one address: the per-address cap (256) holds, the rest are
    refused SERVER_BUSY; /healthz from another address answers; /metrics counts them; once
    closed, every count is given back (the upgrade handed the release on)."""
    stack = await gateway_stack()
    guard = stack.gateway.guard
    opened: list[Ws] = []
    refused = 0
    for _ in range(600):
        try:
            opened.append(await _ws(stack, frames))
        except (InvalidHandshake, OSError, ConnectionClosed, TimeoutError):
            refused += 1
    cap = guard.limits.max_connections_per_address
    assert len(opened) == cap and refused == 600 - cap
    assert guard.refused[ErrorCode.SERVER_BUSY] == refused
    assert guard.per_address["127.0.0.1"] == cap
    for _ in range(500):  # the refused ones are counted until the server sees them close
        if guard.open == cap:
            break
        await asyncio.sleep(0.01)
    assert guard.open == cap

    other = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=stack.gateway.base_url, transport=other) as probe:
        assert (await probe.get("/healthz")).status_code == 200
        metrics = (await probe.get("/metrics")).text
    figures = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith(("gateway_http_connections ", "gateway_websocket_connections "))
    }
    assert figures == {
        "gateway_http_connections": cap + 1,  # the probe's own connection too
        "gateway_websocket_connections": cap,
    }

    await asyncio.gather(*(ws.connection.close() for ws in opened))
    for _ in range(500):
        if guard.open == 0:
            break
        await asyncio.sleep(0.01)
    assert guard.open == 0 and guard.websockets == 0 and not guard.per_address


async def test_ws_legacy_graphql_ws_protocol_is_not_served(
    gateway_stack: StackFactory, frames: Frames
) -> None:
    """Only graphql-transport-ws: a client offering the legacy graphql-ws alone is closed
    4406 (subprotocol not acceptable) before anything runs."""
    stack = await gateway_stack()
    url = stack.gateway.base_url.replace("http://", "ws://") + "/graphql"
    async with connect(url, subprotocols=["graphql-ws"], open_timeout=BOUND) as legacy:  # type: ignore[list-item]
        assert legacy.subprotocol is None
        ws = Ws(legacy, frames)
        assert (await ws.closed_with())[0] == 4406


async def test_ws_upgrade_headers_are_bounded_as_for_http(gateway_stack: StackFactory) -> None:
    """An upgrade request past GATEWAY_MAX_HEADER_BYTES is refused 431 HEADERS_TOO_LARGE
    before any WebSocket exists, and its connection is given back."""
    stack = await gateway_stack()
    guard = stack.gateway.guard
    reader, writer = await asyncio.open_connection(stack.gateway.host, stack.gateway.port)
    head = (
        "GET /graphql HTTP/1.1\r\nHost: gateway\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Protocol: graphql-transport-ws\r\n"
        f"X-Filler: {'a' * (guard.limits.max_header_bytes + 1)}\r\n\r\n"
    )
    writer.write(head.encode())
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    answer = await asyncio.wait_for(reader.read(), BOUND)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 431")
    assert ErrorCode.HEADERS_TOO_LARGE.encode() in answer
    for _ in range(200):
        if guard.open == 0:
            break
        await asyncio.sleep(0.01)
    assert guard.open == 0


async def test_only_graphql_upgrades_and_origins_are_checked(
    gateway_stack: StackFactory, frames: Frames
) -> None:
    """/healthz refuses an upgrade; with GATEWAY_CORS_ORIGINS set, a browser page on another
    origin is refused (cross-site WebSocket hijacking), a listed one and a non-browser client
    (no Origin) are let in."""
    stack = await gateway_stack()
    security = dataclasses.replace(
        stack.gateway_runtime().settings.security, cors_origins=("https://console.example",)
    )
    listed = await gateway_stack(security=security)
    with pytest.raises(InvalidHandshake):
        await _ws(stack, frames, path="/healthz")
    with pytest.raises(InvalidHandshake):
        await _ws(listed, frames, origin="https://evil.example")
    with pytest.raises(InvalidHandshake):
        await _ws(stack, frames, origin="https://evil.example")
    allowed = await _ws(listed, frames, origin="https://console.example")
    for ws in (allowed, await _ws(listed, frames)):
        assert (await ws.init())["type"] == "connection_ack"
    assert listed.gateway.guard.open == 2


# --- shutdown -------------------------------------------------------------------------------


async def test_shutdown_completes_subscriptions(
    gateway_stack: StackFactory, frames: Frames
) -> None:
    """On stop, a multipart subscription ends with its closing boundary (not cut off after
    the grace period), and a WebSocket's subscription completes or its socket closes 1012."""
    stack = await gateway_stack()
    ws = await _ws(stack, frames)
    await ws.init()
    await ws.subscribe("1", [IDLE])
    assert (await ws.update("1"))["reason"] == "INITIAL"
    async with _multipart(stack, frames, [IDLE]) as stream:
        assert (await stream.update())["reason"] == "INITIAL"
        stopping = asyncio.create_task(stack.gateway.stop())
        rest = []
        while (part := await stream.part()) is not None:
            rest.append(part)
        assert all(part == {} for part in rest)  # heartbeats at most, then the clean end
    messages = []
    with contextlib.suppress(ConnectionClosed):
        while True:
            messages.append(await ws.receive())
    assert messages in ([], [{"id": "1", "type": "complete"}])
    assert ws.connection.close_code in (1000, 1012)
    await stopping


@pytest.mark.parametrize(
    ("accept", "streams"),
    [
        (URQL_ACCEPT, True),
        (APOLLO_ACCEPT, True),
        ('multipart/mixed; subscriptionSpec="1.0", application/json', True),
        ("multipart/mixed", True),
        ("application/graphql-response+json, application/json, multipart/mixed", False),
        ("multipart/mixed;deferSpec=20220824,application/json", False),
        ("application/json", False),
        ("*/*", False),
        (None, False),
        ("", False),
    ],
)
def test_which_accept_asks_for_a_multipart_stream(accept: str | None, streams: bool) -> None:
    assert wants_multipart(accept) is streams


# --- settings -------------------------------------------------------------------------------


def test_live_transport_settings_read_and_checked() -> None:
    """GATEWAY_LIVE_*: defaults, values read, and a bad one named in one line."""
    base = {
        "PBX_URL": "https://192.168.5.150:8088",
        "PBX_USERNAME": "api",
        "PBX_PASSWORD": "secret",
        "GATEWAY_AUTH": "none",
    }
    assert Settings.from_environ(base).live_transport == LiveTransportLimits(
        init_timeout=10.0,
        keepalive=15.0,
        max_per_connection=10,
        max_per_identity=200,
        max_message_bytes=65_536,
    )
    given = {
        "GATEWAY_LIVE_INIT_TIMEOUT": "3",
        "GATEWAY_LIVE_KEEPALIVE": "20",
        "GATEWAY_LIVE_MAX_SUBSCRIPTIONS_PER_CONNECTION": "4",
        "GATEWAY_LIVE_MAX_SUBSCRIPTIONS_PER_IDENTITY": "50",
        "GATEWAY_LIVE_MAX_MESSAGE_BYTES": "4096",
    }
    assert Settings.from_environ({**base, **given}).live_transport == LiveTransportLimits(
        3.0, 20.0, 4, 50, 4096
    )
    for name, bad in [
        ("GATEWAY_LIVE_KEEPALIVE", "0"),
        ("GATEWAY_LIVE_MAX_SUBSCRIPTIONS_PER_CONNECTION", "0"),
        ("GATEWAY_LIVE_MAX_MESSAGE_BYTES", "12"),
        ("GATEWAY_LIVE_INIT_TIMEOUT", "soon"),
    ]:
        with pytest.raises(ConfigError, match=name):
            Settings.from_environ({**base, name: bad})
