"""``conferenceSessions`` through the schema, in-process, over a running gateway and simulator.

``schema.subscribe`` runs the subscription with a context built from the running gateway's
runtime, as the view builds one (the transports, WebSocket and HTTP, have tests of their
own). A source is played by telling the runtime's feed what the simulator's rooms are.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from gateway.error_code import ErrorCode
from gateway.security.identity import PINS
from gateway.simulator.profiles import profile_config
from tests.gateway_stack import Stack, StackFactory
from tests.live_helpers import IN_SESSION, context_for, listing, next_of, subscribe
from tests.timing import eventually

PM, SALES, BRIDGE = "6401", "6400", "6403"
ROOMS = "conference/query"


def update_of(result: Any) -> dict[str, Any]:
    """The update of one result without errors."""
    assert result.errors is None, result.errors
    update: dict[str, Any] = result.data["conferenceSessions"]
    return update


def numbers_in(update: dict[str, Any]) -> list[str] | None:
    session = update["session"]
    return None if session is None else [p["number"] for p in session["participants"]]


def error_of(result: Any) -> tuple[str | None, Any]:
    """The code and path of a result's one error."""
    (error,) = result.errors
    return (error.extensions or {}).get("code"), error.path


async def _tell(stack: Stack) -> None:
    """Play a source: tell the feed every room as the PBX lists it now."""
    runtime = stack.gateway_runtime()
    runtime.feed.rooms_listed(await listing(runtime))


async def test_subscription_sends_initial_states_then_changes(gateway_stack: StackFactory) -> None:
    """INITIAL per room in the order asked, then CHANGED on a join; participants as
    Conference.session shows them (the same opaque ids), no channel id anywhere."""
    stack = await gateway_stack()
    stack.pbx.live_join(PM, "4001")
    results = await subscribe(stack.gateway_runtime(), [PM, SALES])

    pm, sales = update_of(await next_of(results)), update_of(await next_of(results))
    stack.pbx.live_join(PM, "4002")
    await _tell(stack)
    joined = update_of(await next_of(results))

    assert (pm["number"], pm["reason"], numbers_in(pm)) == (PM, "INITIAL", ["4001"])
    assert (sales["number"], sales["reason"], sales["session"]) == (SALES, "INITIAL", None)
    assert (joined["reason"], numbers_in(joined)) == ("CHANGED", ["4001", "4002"])
    read = await stack.graphql('{ conference(number: "6401") { session { participants { id } } } }')
    ids = [p["id"] for p in read["data"]["conference"]["session"]["participants"]]
    assert [p["id"] for p in joined["session"]["participants"]] == ids
    channels = [m["channelid"] for s in stack.pbx.live_json()["sessions"] for m in s["members"]]
    assert not any(channel in repr(joined) for channel in channels)
    assert stack.calls(IN_SESSION) == 2  # the first read and the source's listing


async def test_subscription_resync_is_resynced(gateway_stack: StackFactory) -> None:
    """A state told after the event channel came back is sent with reason RESYNCED."""
    stack = await gateway_stack()
    runtime = stack.gateway_runtime()
    results = await subscribe(runtime, [PM])
    assert update_of(await next_of(results))["session"] is None

    stack.pbx.live_join(PM, "4001")
    runtime.feed.rooms_listed(await listing(runtime), resync=True)

    update = update_of(await next_of(results))
    assert (update["reason"], numbers_in(update)) == ("RESYNCED", ["4001"])


async def test_subscription_bad_numbers_refused_without_a_pbx_call(
    gateway_stack: StackFactory,
) -> None:
    """An empty list, a null item (named by position), a malformed number, more than
    GATEWAY_MAX_NUMBERS: BAD_USER_INPUT, nothing watched, no PBX call."""
    stack = await gateway_stack(max_numbers=3)
    runtime = stack.gateway_runtime()

    empty = await next_of(await subscribe(runtime, []))
    null_item = await next_of(await subscribe(runtime, [PM, None]))
    malformed = await next_of(await subscribe(runtime, ["6401,6402"]))
    too_many = await next_of(await subscribe(runtime, ["1", "2", "3", "4"]))

    for result in (empty, null_item, malformed, too_many):
        assert result.data is None
        assert error_of(result)[0] == ErrorCode.BAD_USER_INPUT
    assert "numbers is empty" in empty.errors[0].message
    assert "numbers[1] is null" in null_item.errors[0].message
    assert "is not a conference number" in malformed.errors[0].message
    assert (stack.calls(IN_SESSION), stack.calls(ROOMS)) == (0, 0)
    assert runtime.feed.subscribers == 0


async def test_subscription_more_rooms_than_allowed_refused_before_any_work(
    gateway_stack: StackFactory,
) -> None:
    """Past GATEWAY_LIVE_MAX_ROOMS: BAD_USER_INPUT naming it, with numbers given (no PBX
    call) or left out (the room listing only, never a query_in_session)."""
    stack = await gateway_stack(live_max_rooms=2)
    runtime = stack.gateway_runtime()

    given = await next_of(await subscribe(runtime, ["6400", "6401", "6402"]))
    assert error_of(given)[0] == ErrorCode.BAD_USER_INPUT
    assert "GATEWAY_LIVE_MAX_ROOMS" in given.errors[0].message
    assert (stack.calls(IN_SESSION), stack.calls(ROOMS)) == (0, 0)

    every = await next_of(await subscribe(runtime))
    assert error_of(every)[0] == ErrorCode.BAD_USER_INPUT
    assert "GATEWAY_LIVE_MAX_ROOMS" in every.errors[0].message
    assert (stack.calls(IN_SESSION), stack.calls(ROOMS)) == (0, 1)
    assert runtime.feed.subscribers == 0


async def test_subscription_without_numbers_watches_every_room(gateway_stack: StackFactory) -> None:
    """No numbers: one INITIAL per room on the PBX, in its order, from one room listing and
    one query_in_session."""
    stack = await gateway_stack()
    stack.pbx.live_join(PM, "4001")
    runtime = stack.gateway_runtime()
    rooms = [
        room["number"]
        for room in (await stack.graphql("{ conferences { number } }"))["data"]["conferences"]
    ]
    results = await subscribe(runtime, None)

    updates = [update_of(await next_of(results)) for _ in rooms]

    assert [u["number"] for u in updates] == rooms
    assert {u["reason"] for u in updates} == {"INITIAL"}
    assert [numbers_in(u) for u in updates if u["session"]] == [["4001"]]
    assert runtime.feed.watched_rooms() == frozenset(rooms)
    assert (stack.calls(IN_SESSION), stack.calls(ROOMS)) == (1, 1)


async def test_subscription_without_numbers_on_a_pbx_without_rooms_completes(
    gateway_stack: StackFactory,
) -> None:
    """No numbers and no rooms on the PBX: nothing to watch, so it completes at once,
    without a query_in_session."""
    stack = await gateway_stack()
    stack.pbx.set_conferences([])
    runtime = stack.gateway_runtime()

    results = await subscribe(runtime, None)

    try:
        await next_of(results)
    except StopAsyncIteration:
        pass
    else:
        raise AssertionError("a subscription to no room sent something")
    assert (stack.calls(IN_SESSION), runtime.feed.subscribers) == (0, 0)


async def test_subscription_reads_are_bounded_from_their_own_start(
    gateway_stack: StackFactory,
) -> None:
    """A context made long ago (over WebSocket one serves a whole connection) does not cut a
    new subscription's reads short: its rooms and states are read, not timed out."""
    stack = await gateway_stack(session_ttl=2.0)
    stack.pbx.live_join(PM, "4001")
    runtime = stack.gateway_runtime()
    connection = context_for(runtime)
    stack.clock.advance(3600.0)  # an hour after the connection opened

    results = await subscribe(runtime, None, context=connection)
    updates = [update_of(await next_of(results)) for _ in range(2)]

    assert [u["reason"] for u in updates] == ["INITIAL", "INITIAL"]
    assert (stack.calls(IN_SESSION), stack.calls(ROOMS)) == (1, 1)


async def test_subscription_without_read_scope_is_forbidden(gateway_stack: StackFactory) -> None:
    """A caller without conferences:read gets FORBIDDEN, no update and no PBX call."""
    stack = await gateway_stack()
    runtime = stack.gateway_runtime()

    result = await next_of(await subscribe(runtime, [PM], scopes=frozenset({PINS})))

    assert error_of(result) == (ErrorCode.FORBIDDEN, ["conferenceSessions"])
    assert stack.calls(IN_SESSION) == 0
    assert runtime.feed.subscribers == 0


async def test_subscription_unreadable_state_is_an_error_at_session_path(
    gateway_stack: StackFactory,
) -> None:
    """The PBX answers garbage for the first read: the INITIAL update has session null and
    PBX_UNAVAILABLE at conferenceSessions.session; the next change tells the state."""
    stack = await gateway_stack()
    stack.pbx.live_join(PM, "4001")
    stack.pbx.garbage_next(1, "html", endpoint=IN_SESSION)
    results = await subscribe(stack.gateway_runtime(), [PM])

    first = await next_of(results)
    await _tell(stack)
    fixed = update_of(await next_of(results))

    initial = {"number": PM, "reason": "INITIAL", "session": None}
    assert first.data == {"conferenceSessions": initial}
    assert error_of(first) == (ErrorCode.PBX_UNAVAILABLE, ["conferenceSessions", "session"])
    assert (fixed["reason"], numbers_in(fixed)) == ("CHANGED", ["4001"])


async def test_subscription_fifty_starting_together_cost_one_query(
    gateway_stack: StackFactory,
) -> None:
    """Fifty subscriptions to the same rooms reading their first updates at once: one
    query_in_session; when it fails, each gets the error at its own session path."""
    stack = await gateway_stack()
    stack.pbx.live_join(PM, "4001")
    runtime = stack.gateway_runtime()
    streams = [await subscribe(runtime, [PM]) for _ in range(50)]

    firsts = await asyncio.gather(*(next_of(stream) for stream in streams))

    assert {tuple(numbers_in(update_of(first)) or ()) for first in firsts} == {("4001",)}
    assert stack.calls(IN_SESSION) == 1
    for stream in streams:
        await stream.aclose()  # type: ignore[attr-defined]

    # The closed streams' subscriptions leave the feed as their generators finish.
    await eventually(lambda: runtime.feed.subscribers == 0, what="the first fifty gone")
    stack.clock.advance(5.0)  # the cached listing is past its TTL; nobody watches PM now
    # Every read fails now: a failure is not kept, so a subscriber whose first read starts
    # after a failed one has ended (its document still being checked, on a loaded machine)
    # asks again; each failed read's error is shared by all who waited on it.
    stack.pbx.garbage_next(50, "html", endpoint=IN_SESSION)
    streams = [await subscribe(runtime, [PM]) for _ in range(50)]
    failed = await asyncio.gather(*(next_of(stream) for stream in streams))
    assert {error_of(result)[0] for result in failed} == {ErrorCode.PBX_UNAVAILABLE}
    reads = stack.calls(IN_SESSION) - 1
    errors = {id(result.errors[0].original_error) for result in failed}
    assert len(errors) == reads  # one error per PBX call, shared by its waiters
    assert reads < 50
    shared = failed[0].errors[0].original_error
    assert _frames(shared.__traceback__) < 20  # not fifty raises' worth


def _frames(traceback: TracebackType | None) -> int:
    count = 0
    while traceback is not None:
        count, traceback = count + 1, traceback.tb_next
    return count


async def test_subscription_firmware_without_live_data(gateway_stack: StackFactory) -> None:
    """Profile no-live: FEATURE_UNAVAILABLE at the session path, pointing to the doctor."""
    stack = await gateway_stack(sim_config=profile_config("no-live"))

    first = await next_of(await subscribe(stack.gateway_runtime(), [PM]))

    assert first.data["conferenceSessions"]["session"] is None
    assert error_of(first) == (ErrorCode.FEATURE_UNAVAILABLE, ["conferenceSessions", "session"])
    assert "pbx-gateway doctor" in first.errors[0].message


MODERATE_DOCUMENT = """
mutation Act($input: ConferenceParticipantsInput!) { %s(input: $input) { action } }
"""


async def _moderate(stack: Stack, field: str, **fields: Any) -> None:
    body = await stack.graphql(MODERATE_DOCUMENT % field, {"input": fields})
    assert "errors" not in body, body


async def test_subscription_sees_a_moderators_removal_at_once(gateway_stack: StackFactory) -> None:
    """removeParticipants on a watched room: its subscribers get CHANGED without waiting for
    an event, at the cost of one more query_in_session."""
    stack = await gateway_stack()
    stack.pbx.live_join(BRIDGE, "4001")  # a moderator of the Support Bridge
    stack.pbx.live_join(BRIDGE, "4009")
    results = await subscribe(stack.gateway_runtime(), [BRIDGE])
    assert numbers_in(update_of(await next_of(results))) == ["4001", "4009"]

    await _moderate(stack, "removeParticipants", number=BRIDGE, operator="4001", members=["4009"])
    removed = update_of(await next_of(results))

    assert (removed["reason"], numbers_in(removed)) == ("CHANGED", ["4001"])
    assert stack.calls(IN_SESSION) == 2
    assert stack.calls("conference/kick_member") == 1


async def test_subscription_removal_whose_answer_was_lost_reads_the_room(
    gateway_stack: StackFactory,
) -> None:
    """The PBX's answer to a removal is lost (PBX_UNAVAILABLE: it may have acted): the feed
    reads the room anyway (one query_in_session) and sends what it finds; here the simulator
    dropped the call before acting, so the room is unchanged and nothing is sent."""
    stack = await gateway_stack()
    stack.pbx.live_join(BRIDGE, "4001")
    stack.pbx.live_join(BRIDGE, "4009")
    runtime = stack.gateway_runtime()
    results = await subscribe(runtime, [BRIDGE])
    await next_of(results)
    sent = runtime.feed.updates_sent
    stack.pbx.drop_next(1, "conference/kick_member")

    body = await stack.graphql(
        MODERATE_DOCUMENT % "removeParticipants",
        {"input": {"number": BRIDGE, "operator": "4001", "members": ["4009"]}},
    )
    await runtime.feed.settled()

    assert body["errors"][0]["extensions"]["code"] == ErrorCode.PBX_UNAVAILABLE
    assert stack.calls(IN_SESSION) == 2
    assert runtime.feed.updates_sent == sent
    stack.pbx.live_leave(BRIDGE, "4009")  # it leaves on its own: the next news is sent
    await _tell(stack)
    assert numbers_in(update_of(await next_of(results))) == ["4001"]


async def test_subscription_moderators_refresh_is_shared_with_session_reads(
    gateway_stack: StackFactory,
) -> None:
    """After a removal on a watched room, the feed's refresh and Conference.session reads
    that follow share one query_in_session: one PBX call for the action, whatever reads."""
    stack = await gateway_stack()
    stack.pbx.live_join(BRIDGE, "4001")
    stack.pbx.live_join(BRIDGE, "4009")
    runtime = stack.gateway_runtime()
    results = await subscribe(runtime, [BRIDGE])
    await next_of(results)
    read = '{ conference(number: "6403") { session { participants { number } } } }'

    await _moderate(stack, "removeParticipants", number=BRIDGE, operator="4001", members=["4009"])
    answers = await asyncio.gather(*(stack.graphql(read) for _ in range(3)))
    removed = update_of(await next_of(results))

    assert numbers_in(removed) == ["4001"]
    for answer in answers:
        assert answer["data"]["conference"]["session"]["participants"] == [{"number": "4001"}]
    assert stack.calls(IN_SESSION) == 2


async def test_subscription_moderators_mute_reads_the_room_once_and_sends_no_repeat(
    gateway_stack: StackFactory,
) -> None:
    """muteParticipants on a watched room: one more query_in_session; the PBX reports no mute
    flag, so the room's state is the same and nothing is sent; on a room nobody watches, no
    extra call at all."""
    stack = await gateway_stack()
    stack.pbx.live_join(BRIDGE, "4001")
    stack.pbx.live_join(BRIDGE, "4009")
    runtime = stack.gateway_runtime()
    results = await subscribe(runtime, [BRIDGE])
    await next_of(results)
    sent = runtime.feed.updates_sent

    await _moderate(stack, "muteParticipants", number=BRIDGE, operator="4001", members=["4009"])
    await runtime.feed.settled()
    assert stack.pbx.live.session(BRIDGE).members[1].muted  # type: ignore[union-attr]
    assert (stack.calls(IN_SESSION), runtime.feed.updates_sent) == (2, sent)

    await results.aclose()  # type: ignore[attr-defined]
    await _moderate(stack, "unmuteParticipants", number=BRIDGE, operator="4001", members=["4009"])
    await runtime.feed.settled()
    assert stack.calls(IN_SESSION) == 2


async def test_subscription_slow_consumer_ends_with_the_error(gateway_stack: StackFactory) -> None:
    """A subscriber past GATEWAY_LIVE_BUFFER updates behind: its next result is the
    SlowConsumer error (the transports close it with SLOW_CONSUMER), then it ends."""
    from gateway.live.feed import SlowConsumer

    stack = await gateway_stack(live_buffer=2)
    runtime = stack.gateway_runtime()
    stack.pbx.live_join(PM, "4001")
    results = await subscribe(runtime, [PM])
    await next_of(results)
    one = (await listing(runtime))[PM]
    stack.pbx.live_join(PM, "4002")
    two = (await listing(runtime))[PM]

    for state in (two, one, two):
        runtime.feed.room_changed(PM, state)
    failed = await next_of(results)

    assert failed.data is None
    assert isinstance(failed.errors[0].original_error, SlowConsumer)
    assert (runtime.feed.slow_consumers, runtime.feed.subscribers) == (1, 0)


async def test_subscription_completes_as_soon_as_the_gateway_stops(
    gateway_stack: StackFactory,
) -> None:
    """Shutdown completes every subscription as it begins, while the server still waits for
    an in-flight request (a subscription streaming over HTTP would otherwise hold the whole
    grace period); the request is answered, then the gateway stops."""
    stack = await gateway_stack()
    runtime = stack.gateway_runtime()
    results = await subscribe(runtime, [PM])
    await next_of(results)
    stack.pbx.stall_next(1, 30, endpoint=ROOMS)
    in_flight = asyncio.create_task(stack.graphql("{ conferences { number } }"))
    await eventually(lambda: stack.calls(ROOMS) == 1, what="the request reached the PBX")

    stopping = asyncio.create_task(stack.gateway.stop())
    try:
        await next_of(results)
    except StopAsyncIteration:
        pass
    else:
        raise AssertionError("the subscription sent an update instead of completing")

    assert not in_flight.done() and not stopping.done()
    assert runtime.feed.closed and runtime.feed.subscribers == 0
    stack.pbx.clear_faults()
    assert "errors" not in await in_flight
    await stopping


async def test_subscription_over_plain_http_is_refused_clearly(
    gateway_stack: StackFactory,
) -> None:
    """A subscription POSTed (or sent with GET) for one JSON answer: 400 BAD_REQUEST saying
    it needs a streaming transport; nothing is watched and the PBX is not called."""
    stack = await gateway_stack()
    document = 'subscription { conferenceSessions(numbers: ["6401"]) { number } }'

    posted = await stack.client.post("/graphql", json={"query": document})
    got = await stack.client.get(
        "/graphql", params={"query": document}, headers={"accept": "application/json"}
    )

    for response in (posted, got):
        assert response.status_code == 400
        (error,) = response.json()["errors"]
        assert error["extensions"]["code"] == ErrorCode.BAD_REQUEST
        assert "streaming transport" in error["message"]
    assert stack.calls(IN_SESSION) == 0
    assert stack.gateway_runtime().feed.subscribers == 0
