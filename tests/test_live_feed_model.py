"""The live feed against a model: generated sequences of source news, subscribers coming,
reading and going, checked against what every subscriber must have seen.

The PBX here is a dictionary (who is in each of three rooms) read through the gateway's real
:class:`~gateway.session_cache.SessionCache`; every change to it is told to the feed the way
a source would (an event for one room, or a listing of some or every room, maybe a resync),
so the feed's knowledge and the PBX never disagree. What must hold, whatever the order:

- per subscriber and room, the first update is INITIAL and the others are changes;
- no update repeats the state sent just before it for that room;
- after a subscriber has read everything, its last state of each room is the PBX's;
- a subscriber's buffer never holds more than the limit; past it, the subscriber's next
  read raises SlowConsumer and nothing more is sent to it.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.live.feed import LiveFeed, SessionUpdate, SlowConsumer, Subscription, same_state
from gateway.pbx.sessions_query import LiveMember, LiveSession
from gateway.session_cache import SessionCache

ROOMS = ("6400", "6401", "6402")
BUFFER = 3
MODEL = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same cases on every run: CI failures reproduce
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _member(number: str) -> LiveMember:
    return LiveMember("ext", number, None, None, None, f"PJSIP/{number}-1", "ANSWERED")


def _state(room: str, people: frozenset[str]) -> LiveSession | None:
    """A fresh object each time, as a new PBX answer would be."""
    if not people:
        return None
    members = tuple(_member(number) for number in sorted(people))
    return LiveSession(number=room, name=None, callid="1.1", members=members)


PEOPLE = st.frozensets(st.sampled_from(("4001", "4002", "4003")), max_size=3)
ROOM = st.sampled_from(ROOMS)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("event"), ROOM, PEOPLE),
        st.tuples(
            st.just("listing"),
            st.one_of(st.none(), st.frozensets(ROOM, min_size=1)),
            st.fixed_dictionaries({room: PEOPLE for room in ROOMS}),
            st.booleans(),
        ),
        st.tuples(st.just("subscribe"), st.frozensets(ROOM, min_size=1)),
        st.tuples(st.just("read"), st.integers(0, 7)),
        st.tuples(st.just("leave"), st.integers(0, 7)),
    ),
    max_size=40,
)


@dataclass
class Watcher:
    """One subscriber and everything it was sent, per room."""

    subscription: Subscription
    seen: dict[str, list[SessionUpdate]] = field(default_factory=dict)
    dropped: bool = False
    left: bool = False


async def _drain(watcher: Watcher) -> None:
    """Read everything the subscriber has (its first read makes its INITIAL updates)."""
    subscription = watcher.subscription
    if watcher.dropped or watcher.left:
        return
    expected = len(subscription.numbers) if not watcher.seen else 0
    try:
        for _ in range(expected):
            update = await subscription.__anext__()
            watcher.seen.setdefault(update.number, []).append(update)
        while subscription.buffered or subscription.dropped:
            update = await subscription.__anext__()
            watcher.seen.setdefault(update.number, []).append(update)
    except SlowConsumer:
        watcher.dropped = True


async def _run(operations: list[Any]) -> None:
    pbx: dict[str, frozenset[str]] = dict.fromkeys(ROOMS, frozenset())

    async def fetch_all() -> dict[str, LiveSession]:
        return {r: s for r in ROOMS if (s := _state(r, pbx[r])) is not None}

    feed = LiveFeed(SessionCache(fetch_all, ttl=3600.0), buffer=BUFFER)
    watchers: list[Watcher] = []
    for operation in operations:
        kind = operation[0]
        if kind == "event":
            _, room, people = operation
            pbx[room] = people
            feed.room_changed(room, _state(room, people))
        elif kind == "listing":
            _, rooms, news, resync = operation
            for room in rooms if rooms is not None else ROOMS:
                pbx[room] = news[room]
            listing = {r: s for r in ROOMS if (s := _state(r, pbx[r])) is not None}
            feed.rooms_listed(listing, rooms, resync=resync)
        elif kind == "subscribe":
            watchers.append(Watcher(feed.subscribe(sorted(operation[1]))))
        elif kind == "read" and watchers:
            await _drain(watchers[operation[1] % len(watchers)])
        elif kind == "leave" and watchers:
            watcher = watchers[operation[1] % len(watchers)]
            watcher.left = True
            await watcher.subscription.aclose()
        for watcher in watchers:
            assert watcher.subscription.buffered <= BUFFER
    for watcher in watchers:
        await _drain(watcher)
        _check(watcher, pbx)
    open_ = [w for w in watchers if not (w.dropped or w.left)]
    assert feed.subscribers == len(open_)
    assert feed.watched_rooms() == frozenset(r for w in open_ for r in w.subscription.numbers)
    assert feed.slow_consumers == sum(w.dropped for w in watchers)


def _check(watcher: Watcher, pbx: dict[str, frozenset[str]]) -> None:
    for room, updates in watcher.seen.items():
        assert updates[0].reason.name == "INITIAL"
        assert all(update.reason.name != "INITIAL" for update in updates[1:])
        for before, after in itertools.pairwise(updates):
            assert not same_state(before.session, after.session)
        if not (watcher.dropped or watcher.left):
            assert same_state(updates[-1].session, _state(room, pbx[room]))
    if watcher.dropped:
        assert watcher.subscription.buffered == 0


@MODEL
@given(operations=OPERATIONS)
def test_feed_model_every_subscriber_ends_on_the_truth_without_repeats(
    operations: list[Any],
) -> None:
    """Any sequence of news and subscribers: INITIAL first, no repeat, every subscriber ends
    on the PBX's state of each room, buffers bounded, slow subscribers dropped and counted."""
    asyncio.run(_run(operations))
