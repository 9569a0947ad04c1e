"""The live feed on its own: the gateway's real session cache over the real simulator.

A source (events, poller) is not under test here: each test plays one by reading the
simulator's rooms with ``query_in_session`` (as a source would) and telling the feed through
its sink methods. Counts come from the simulator (``conference/query_in_session`` calls); the
gateway's fake clock moves the session cache's TTL without sleeping.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import ConfigError, PbxFeatureUnavailableError, PbxUnavailableError
from gateway.live.feed import LiveFeed, SessionUpdate, SlowConsumer, UpdateReason
from gateway.pbx.sessions_query import LiveMember, LiveSession
from gateway.session_cache import SessionCache
from gateway.settings import Settings
from gateway.simulator.profiles import profile_config
from tests.gateway_stack import Stack, StackFactory
from tests.live_helpers import IN_SESSION, listing, next_of
from tests.timing import eventually

PM, SALES, BOARD = "6401", "6400", "6402"
INITIAL, CHANGED, RESYNCED = UpdateReason.INITIAL, UpdateReason.CHANGED, UpdateReason.RESYNCED


def who(update: SessionUpdate) -> list[str] | None:
    """The numbers in the update's room, None when nobody is in it."""
    if update.session is None:
        return None
    return [member.number or member.from_number or "" for member in update.session.members]


async def _room(stack: Stack, number: str = PM) -> LiveSession | None:
    """Room ``number`` as the PBX lists it now (one PBX call)."""
    return (await listing(stack.gateway_runtime())).get(number)


async def test_feed_sends_each_rooms_state_first_from_one_listing(
    gateway_stack: StackFactory,
) -> None:
    """The first reads are one INITIAL per room, in the order asked (a repeat once): who is
    in PM, nobody in Sales; one query_in_session for both."""
    stack = await gateway_stack()
    stack.pbx.live_join(PM, "4001")
    feed = stack.gateway_runtime().feed

    async with feed.subscribe([PM, SALES, PM]) as subscription:
        first, second = await next_of(subscription), await next_of(subscription)

        assert (first.number, first.reason, who(first)) == (PM, INITIAL, ["4001"])
        assert (second.number, second.reason, who(second)) == (SALES, INITIAL, None)
        assert subscription.numbers == (PM, SALES)
        assert subscription.buffered == 0
    assert stack.calls(IN_SESSION) == 1


async def test_feed_fifty_subscribers_starting_together_cost_one_query(
    gateway_stack: StackFactory,
) -> None:
    """Fifty subscribers reading their first update at once share one query_in_session; one
    more, after the session cache's TTL, is answered from the feed's own state: no call."""
    stack = await gateway_stack(session_ttl=2.0)
    stack.pbx.live_join(PM, "4001")
    feed = stack.gateway_runtime().feed
    subscriptions = [feed.subscribe([PM, BOARD]) for _ in range(50)]

    firsts = await asyncio.gather(*(next_of(s) for s in subscriptions))

    assert {(u.number, u.reason, tuple(who(u) or ())) for u in firsts} == {(PM, INITIAL, ("4001",))}
    assert stack.calls(IN_SESSION) == 1
    stack.clock.advance(5.0)
    late = feed.subscribe([PM])
    assert who(await next_of(late)) == ["4001"]
    assert stack.calls(IN_SESSION) == 1
    assert feed.subscribers == 51
    for subscription in [*subscriptions, late]:
        await subscription.aclose()
    assert feed.subscribers == 0
    assert feed.watched_rooms() == frozenset()


async def test_feed_join_and_leave_each_send_exactly_one_change(
    gateway_stack: StackFactory,
) -> None:
    """A member joins (an event: room_changed), one leaves (a poll of the room: rooms_listed),
    the last leaves (a listing of every room): one CHANGED each, with the room's new state."""
    stack = await gateway_stack()
    stack.pbx.live_join(PM, "4001")
    runtime = stack.gateway_runtime()
    feed = runtime.feed
    subscription = feed.subscribe([PM])
    assert who(await next_of(subscription)) == ["4001"]

    stack.pbx.live_join(PM, "4002")
    feed.room_changed(PM, await _room(stack))
    joined = await next_of(subscription)
    assert (joined.reason, who(joined), subscription.buffered) == (CHANGED, ["4001", "4002"], 0)

    stack.pbx.live_leave(PM, "4001")
    feed.rooms_listed(await listing(runtime), [PM])
    left = await next_of(subscription)
    assert (left.reason, who(left), subscription.buffered) == (CHANGED, ["4002"], 0)

    stack.pbx.live_leave(PM, "4002")
    feed.rooms_listed(await listing(runtime))
    empty = await next_of(subscription)
    assert (empty.reason, who(empty), subscription.buffered) == (CHANGED, None, 0)
    assert feed.updates_sent == 4


async def test_feed_sends_no_repeat_of_the_last_state(gateway_stack: StackFactory) -> None:
    """The same members again (an event, a poll, a resync, each a fresh read of the PBX) and
    nobody again: nothing is sent; the next real change is the next update."""
    stack = await gateway_stack()
    stack.pbx.live_join(PM, "4001")
    runtime = stack.gateway_runtime()
    feed = runtime.feed
    subscription = feed.subscribe([PM, SALES])
    await next_of(subscription), await next_of(subscription)
    sent = feed.updates_sent

    same = await _room(stack)
    feed.room_changed(PM, same)
    feed.rooms_listed(await listing(runtime), [PM, SALES])
    feed.rooms_listed(await listing(runtime), resync=True)
    feed.room_changed(SALES, None)
    assert subscription.buffered == 0

    stack.pbx.live_join(SALES, "4003")
    feed.room_changed(SALES, await _room(stack, SALES))
    change = await next_of(subscription)
    assert (change.number, change.reason, who(change)) == (SALES, CHANGED, ["4003"])
    assert feed.updates_sent == sent + 1


async def test_feed_resync_is_sent_as_resynced(gateway_stack: StackFactory) -> None:
    """A listing read after the event channel came back (resync=True) tells what changed
    while it was down as RESYNCED; the session cache takes it as its fresh listing."""
    stack = await gateway_stack(session_ttl=2.0)
    runtime = stack.gateway_runtime()
    feed = runtime.feed
    subscription = feed.subscribe([PM])
    assert who(await next_of(subscription)) is None

    stack.pbx.live_join(PM, "4001")
    stack.clock.advance(5.0)  # the cache's listing is past its TTL
    feed.rooms_listed(await listing(runtime), resync=True)
    update = await next_of(subscription)

    assert (update.reason, who(update)) == (RESYNCED, ["4001"])
    calls = stack.calls(IN_SESSION)
    (state,) = await runtime.live.get_many([PM])
    assert isinstance(state, LiveSession) and state.members[0].number == "4001"
    assert stack.calls(IN_SESSION) == calls  # the resync's listing is the cache's now


async def test_feed_slow_consumer_is_dropped_with_its_buffer_bounded(
    gateway_stack: StackFactory,
) -> None:
    """A subscriber that does not read holds at most GATEWAY_LIVE_BUFFER updates; one more
    and it is dropped (buffer freed, counted) and its next read raises SlowConsumer; a
    subscriber that reads gets every change."""
    stack = await gateway_stack()
    stack.pbx.live_join(PM, "4001")
    runtime = stack.gateway_runtime()
    feed = LiveFeed(runtime.live, buffer=4)
    slow, fast = feed.subscribe([PM]), feed.subscribe([PM])
    await next_of(slow), await next_of(fast)
    one = await _room(stack)
    stack.pbx.live_join(PM, "4002")
    two = await _room(stack)

    sizes = []
    for turn in range(10):
        feed.room_changed(PM, two if turn % 2 == 0 else one)
        sizes.append(slow.buffered)
        assert who(await next_of(fast)) == (["4001", "4002"] if turn % 2 == 0 else ["4001"])

    assert sizes == [1, 2, 3, 4, 0, 0, 0, 0, 0, 0]
    assert (feed.slow_consumers, feed.subscribers) == (1, 1)
    with pytest.raises(SlowConsumer, match="GATEWAY_LIVE_BUFFER"):
        await next_of(slow)
    with pytest.raises(SlowConsumer):  # stays failed: it must subscribe again
        await next_of(slow)


async def test_feed_rooms_nobody_watches_cost_nothing(gateway_stack: StackFactory) -> None:
    """A change to a room nobody subscribes to reaches no one; a moderator's refresh of such a
    room makes no PBX call; once the last subscriber leaves, its room is forgotten."""
    stack = await gateway_stack()
    stack.pbx.live_join(SALES, "4003")
    runtime = stack.gateway_runtime()
    feed = runtime.feed
    subscription = feed.subscribe([PM])
    await next_of(subscription)
    sales = await _room(stack, SALES)
    calls = stack.calls(IN_SESSION)

    feed.room_changed(SALES, sales)
    feed.rooms_listed({SALES: sales} if sales else {}, [SALES])
    feed.refresh_soon(SALES)
    await feed.settled()

    assert subscription.buffered == 0
    assert feed.watched_rooms() == frozenset({PM})
    assert stack.calls(IN_SESSION) == calls
    await subscription.aclose()
    assert feed.watched_rooms() == frozenset()
    feed.refresh_soon(PM)
    await feed.settled()
    assert stack.calls(IN_SESSION) == calls
    with pytest.raises(StopAsyncIteration):
        await next_of(subscription)


async def test_feed_state_learned_during_the_first_read_wins(gateway_stack: StackFactory) -> None:
    """A change told while the first read waits for the PBX is the INITIAL state (the feed's
    own), and is not sent again as a change."""
    stack = await gateway_stack()
    stack.pbx.live_join(PM, "4001")
    runtime = stack.gateway_runtime()
    feed = runtime.feed
    stack.pbx.stall_next(1, 30, endpoint=IN_SESSION)
    subscription = feed.subscribe([PM])
    first = asyncio.create_task(next_of(subscription))
    await eventually(lambda: stack.calls(IN_SESSION) == 1, what="the first read reached the PBX")

    stack.pbx.live_join(PM, "4002")
    told = await _room(stack)  # the second call is not stalled
    feed.room_changed(PM, told)
    stack.pbx.clear_faults()
    update = await first

    assert update.reason is INITIAL and update.session is told
    assert subscription.buffered == 0


async def test_feed_read_answered_after_newer_news_does_not_undo_it() -> None:
    """A first read that left before an event but is answered after it (the PBX's answer
    predates the event) does not take the room back: the event's state is the INITIAL and
    no older state is sent. (Only a held read makes this order happen on demand.)"""
    member = LiveMember("ext", "4001", None, None, None, "c1", "ANSWERED")
    before = LiveSession(PM, "PM", "1.1", (member,))
    asked, held = asyncio.Event(), asyncio.Event()

    async def answer_after_the_event() -> dict[str, LiveSession]:
        asked.set()
        await held.wait()
        return {PM: before}  # who was in the room when the PBX read it

    feed = LiveFeed(SessionCache(answer_after_the_event, ttl=2.0))
    watching, joining = feed.subscribe([PM]), feed.subscribe([PM])
    first = asyncio.create_task(next_of(joining))
    await asyncio.wait_for(asked.wait(), 10)  # the read is under way
    feed.room_changed(PM, None)  # the last member left: the event
    held.set()

    update = await first
    assert (update.reason, update.session) == (INITIAL, None)
    watching_first = await next_of(watching)
    assert (watching_first.reason, watching_first.session) == (INITIAL, None)
    assert joining.buffered == watching.buffered == 0


async def test_session_cache_keeps_news_told_while_a_fetch_was_under_way() -> None:
    """An event told while the listing's fetch is under way, and that fetch answered with
    the room as it was before: the cache keeps the event's state (for the fetch's waiters
    too); a whole listing told meanwhile is kept instead of the fetch's."""
    member = LiveMember("ext", "4001", None, None, None, "c1", "ANSWERED")
    before = {PM: LiveSession(PM, "PM", "1.1", (member,))}
    asked, held = asyncio.Event(), asyncio.Event()

    async def answer_after_the_event() -> dict[str, LiveSession]:
        asked.set()
        await held.wait()
        return before

    cache = SessionCache(answer_after_the_event, ttl=3600.0)
    waiting = asyncio.create_task(cache.get_many([PM, SALES]))
    await asyncio.wait_for(asked.wait(), 10)
    cache.apply(PM, None)  # the last member left
    held.set()

    assert await waiting == [None, None]
    assert await cache.get_many([PM]) == [None]
    assert cache.stats.fetches == 1

    cache.forget()
    asked.clear()
    held.clear()
    waiting = asyncio.create_task(cache.get_many([PM]))
    await asyncio.wait_for(asked.wait(), 10)
    cache.apply_listing({})  # a resync: nobody anywhere
    held.set()
    assert await waiting == [None]
    assert await cache.get_many([PM]) == [None]
    assert cache.stats.fetches == 2


async def test_feed_subscriber_leaving_during_its_first_read_does_not_wait(
    gateway_stack: StackFactory,
) -> None:
    """A subscription closed while its first read waits for the PBX ends at once; the read
    it shared goes on and answers another subscriber."""
    stack = await gateway_stack()
    stack.pbx.live_join(PM, "4001")
    feed = stack.gateway_runtime().feed
    stack.pbx.stall_next(1, 30, endpoint=IN_SESSION)
    leaving, staying = feed.subscribe([PM]), feed.subscribe([PM])
    left = asyncio.create_task(next_of(leaving))
    stays = asyncio.create_task(next_of(staying))
    await eventually(lambda: stack.calls(IN_SESSION) == 1, what="the first read is stalled")

    await leaving.aclose()
    with pytest.raises(StopAsyncIteration):
        await left
    assert not stays.done() and feed.subscribers == 1
    stack.pbx.clear_faults()

    assert who(await stays) == ["4001"]
    assert stack.calls(IN_SESSION) == 1


async def test_feed_unreadable_room_at_start_carries_the_error_then_the_next_state(
    gateway_stack: StackFactory,
) -> None:
    """The PBX answers garbage for the first read: the INITIAL update carries the error (no
    state); the next change is sent, even the state a repeat check would have suppressed."""
    stack = await gateway_stack()
    stack.pbx.live_join(PM, "4001")
    feed = stack.gateway_runtime().feed
    stack.pbx.garbage_next(1, "html", endpoint=IN_SESSION)
    subscription = feed.subscribe([PM])

    first = await next_of(subscription)
    assert (first.reason, first.session) == (INITIAL, None)
    assert isinstance(first.error, PbxUnavailableError)

    feed.room_changed(PM, await _room(stack))
    fixed = await next_of(subscription)
    assert (fixed.reason, who(fixed), fixed.error) == (CHANGED, ["4001"], None)


async def test_feed_firmware_without_live_data_is_feature_unavailable(
    gateway_stack: StackFactory,
) -> None:
    """Profile no-live (errno 10003): the INITIAL update carries FEATURE_UNAVAILABLE."""
    stack = await gateway_stack(sim_config=profile_config("no-live"))
    feed = stack.gateway_runtime().feed

    async with feed.subscribe([PM]) as subscription:
        first = await next_of(subscription)

    assert isinstance(first.error, PbxFeatureUnavailableError)
    assert stack.calls(IN_SESSION) == 1


async def test_feed_later_subscriber_read_fixes_an_earlier_ones_error(
    gateway_stack: StackFactory,
) -> None:
    """A subscriber whose first read failed gets the room's state as a change when a later
    subscriber's first read succeeds (the feed learned it then)."""
    stack = await gateway_stack(session_ttl=2.0)
    stack.pbx.live_join(PM, "4001")
    feed = stack.gateway_runtime().feed
    stack.pbx.garbage_next(1, "html", endpoint=IN_SESSION)
    early = feed.subscribe([PM])
    assert (await next_of(early)).error is not None

    later = feed.subscribe([PM])
    assert who(await next_of(later)) == ["4001"]
    fixed = await next_of(early)
    assert (fixed.reason, who(fixed)) == (CHANGED, ["4001"])
    assert stack.calls(IN_SESSION) == 2


async def test_feed_news_reaches_conference_session_reads_at_once(
    gateway_stack: StackFactory,
) -> None:
    """An event patches the session cache: a Conference.session read within the TTL shows it
    without asking the PBX, for a watched room and for one nobody watches."""
    stack = await gateway_stack(session_ttl=2.0)
    stack.pbx.live_join(PM, "4001")
    feed = stack.gateway_runtime().feed
    read = '{ pm: conference(number: "6401") { session { participants { number } } } '
    read += 'sales: conference(number: "6400") { session { participants { number } } } }'
    await stack.graphql(read)

    stack.pbx.live_join(PM, "4002")
    stack.pbx.live_join(SALES, "4003")
    rooms = await listing(stack.gateway_runtime())
    feed.room_changed(PM, rooms.get(PM))
    feed.room_changed(SALES, rooms.get(SALES))
    body = await stack.graphql(read)

    assert body["data"]["pm"]["session"]["participants"] == [{"number": "4001"}, {"number": "4002"}]
    assert body["data"]["sales"]["session"]["participants"] == [{"number": "4003"}]
    assert stack.calls(IN_SESSION) == 2  # the first read and the source's listing

    stack.pbx.live_clear(PM)
    feed.room_changed(PM, None)
    after = await stack.graphql(read)
    assert after["data"]["pm"]["session"] is None
    assert stack.calls(IN_SESSION) == 2


async def test_feed_close_completes_every_subscription(gateway_stack: StackFactory) -> None:
    """Closing the feed: a subscription gets what it had buffered then ends; one still in its
    first read ends without an update; a new one ends at once, without a PBX call."""
    stack = await gateway_stack()
    stack.pbx.live_join(PM, "4001")
    runtime = stack.gateway_runtime()
    feed = runtime.feed
    reading = feed.subscribe([PM])
    await next_of(reading)
    feed.room_changed(PM, None)
    stack.clock.advance(5.0)
    stack.pbx.stall_next(1, 30, endpoint=IN_SESSION)
    starting = feed.subscribe([SALES])
    first = asyncio.create_task(next_of(starting))
    calls = stack.calls(IN_SESSION)
    await eventually(lambda: stack.calls(IN_SESSION) == calls + 1, what="the read is stalled")

    await feed.close()

    with pytest.raises(StopAsyncIteration):  # without waiting for the PBX's answer
        await first
    stack.pbx.clear_faults()
    assert who(await next_of(reading)) is None
    with pytest.raises(StopAsyncIteration):
        await next_of(reading)
    late = feed.subscribe([PM])
    with pytest.raises(StopAsyncIteration):
        await next_of(late)
    assert stack.calls(IN_SESSION) == calls + 1
    assert (feed.subscribers, feed.watched_rooms()) == (0, frozenset())


async def test_feed_counts_in_metrics(gateway_stack: StackFactory) -> None:
    """/metrics shows the subscribers open, the updates sent and the slow consumers closed."""
    stack = await gateway_stack(live_buffer=1)
    runtime = stack.gateway_runtime()
    feed = runtime.feed
    subscription, slow = feed.subscribe([PM, SALES]), feed.subscribe([PM])
    await next_of(subscription), await next_of(subscription), await next_of(slow)

    text = (await stack.client.get("/metrics")).text
    assert "gateway_live_subscribers 2.0" in text
    assert "gateway_live_updates_total 3.0" in text
    assert "gateway_live_slow_consumers_total 0.0" in text

    stack.pbx.live_join(PM, "4001")
    feed.room_changed(PM, await _room(stack))
    assert who(await next_of(subscription)) == ["4001"]
    feed.room_changed(PM, None)  # slow holds one unread update already: dropped
    text = (await stack.client.get("/metrics")).text
    assert "gateway_live_subscribers 1.0" in text
    assert "gateway_live_slow_consumers_total 1.0" in text


async def test_feed_initial_updates_are_not_held_to_the_buffer(
    gateway_stack: StackFactory,
) -> None:
    """A subscription to more rooms than its buffer holds gets every INITIAL update (they
    are bounded by GATEWAY_LIVE_MAX_ROOMS, not by the buffer) and stays subscribed."""
    stack = await gateway_stack(live_buffer=2)
    feed = stack.gateway_runtime().feed
    rooms = ["6400", "6401", "6402", "6403", "6404"]

    async with feed.subscribe(rooms) as subscription:
        firsts = [await next_of(subscription) for _ in rooms]

        assert [(u.number, u.reason) for u in firsts] == [(n, INITIAL) for n in rooms]
        assert not subscription.dropped and feed.slow_consumers == 0


def test_live_settings_defaults_and_refusals() -> None:
    """GATEWAY_LIVE_BUFFER (64) and GATEWAY_LIVE_MAX_ROOMS (100) are read, typed and checked
    (at least 1), with a one-line error naming the variable."""
    base = {"PBX_URL": "https://pbx.example:8088", "PBX_USERNAME": "api", "PBX_PASSWORD": "pw"}
    base["GATEWAY_AUTH"] = "none"
    defaults = Settings.from_environ(base)
    assert (defaults.live_buffer, defaults.live_max_rooms) == (64, 100)
    read = Settings.from_environ(
        {**base, "GATEWAY_LIVE_BUFFER": "8", "GATEWAY_LIVE_MAX_ROOMS": "500"}
    )
    assert (read.live_buffer, read.live_max_rooms) == (8, 500)
    for name, value in (("GATEWAY_LIVE_BUFFER", "0"), ("GATEWAY_LIVE_MAX_ROOMS", "many")):
        with pytest.raises(ConfigError, match=name):
            Settings.from_environ({**base, name: value})


def test_feed_refuses_more_rooms_than_allowed() -> None:
    """More rooms than max_rooms: BadInputError before anything is watched."""
    from gateway.errors import BadInputError
    from gateway.session_cache import SessionCache

    async def never() -> dict[str, LiveSession]:
        raise AssertionError("no PBX read expected")

    feed = LiveFeed(SessionCache(never, ttl=2.0), max_rooms=2)
    with pytest.raises(BadInputError, match="GATEWAY_LIVE_MAX_ROOMS"):
        feed.subscribe(["6400", "6401", "6402"])
    assert (feed.subscribers, feed.watched_rooms()) == (0, frozenset())
