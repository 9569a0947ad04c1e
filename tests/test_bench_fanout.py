"""The fan-out workload's bookkeeping, without processes: which change an update carries.

The workload's figures are only as good as its matching: every change must leave its room
with a member set that room never had, and an update must count for its change once, for
each subscriber, in order. A folded update (two changes seen as one) or a repeat must show
up as a missed delivery or an unmatched update, never as a delivery.
"""

from __future__ import annotations

from typing import Any

from bench.fanout import FanoutPlan, addresses, gateway_settings, plans
from bench.fanout_load import Change, RoomPlan, Tracker, _figures
from bench.subscriber import Subscriber

ROOMS = ["6400", "6401"]


def _subscriber(index: int, room: str) -> Subscriber:
    return Subscriber(index, "ws://127.0.0.1:1/graphql", room, lambda *_: None)


def _update(room: str, members: frozenset[str], reason: str = "CHANGED") -> dict[str, Any]:
    participants = [{"number": number} for number in sorted(members)]
    return {"number": room, "reason": reason, "session": {"participants": participants}}


def _drive(tracker: Tracker, plan: RoomPlan, count: int) -> list[frozenset[str]]:
    states = []
    for index in range(count):
        room, action, member, after = plan.next_change(index)
        tracker.expect(Change(index, room, action, member, sent=float(index)), after)
        states.append(after)
    return states


def test_every_change_leaves_its_room_in_a_state_it_never_had() -> None:
    plan = RoomPlan(ROOMS)
    seen: set[tuple[str, frozenset[str]]] = set()
    actions = []
    for index in range(40):
        room, action, _member, after = plan.next_change(index)
        assert plan.anchors[room] in after  # the room is never empty
        assert (room, after) not in seen
        seen.add((room, after))
        actions.append(action)
    assert actions[:8] == ["join"] * 4 + ["leave", "leave", "join", "join"]


def test_each_subscriber_counts_each_change_of_its_room_once() -> None:
    tracker = Tracker({"6400": 2, "6401": 1})
    plan = RoomPlan(ROOMS)
    states = _drive(tracker, plan, 4)  # rooms 6400, 6401, 6400, 6401
    a, b, c = _subscriber(0, "6400"), _subscriber(1, "6400"), _subscriber(2, "6401")

    for when, (subscriber, change) in enumerate([(a, 0), (b, 0), (c, 1), (a, 2), (c, 3)]):
        tracker.update(subscriber, _update(subscriber.room, states[change]), 10.0 + when)
    tracker.update(a, _update("6400", states[0]), 20.0)  # a repeat of an older state

    assert [change.seen for change in tracker.changes] == [2, 1, 1, 1]
    assert tracker.pending == 1  # change 2 still misses subscriber b
    assert not tracker.all_seen.is_set()
    assert tracker.unmatched == 1
    figures = _figures(tracker, tracker.changes, {"calls": {}}, 0.0, 30.0)
    assert figures["latency_from"] == "admin call sent"  # no simulator stamp here
    assert (figures["events_complete"], figures["deliveries"]) == (3, 5)
    assert (figures["deliveries_expected"], figures["deliveries_missed"]) == (6, 1)
    # Changes 0, 1 and 3 reached their last subscriber 11 s after they were sent; the first
    # subscriber read change 0 after 10 s, the others (one subscriber each) after 11 s.
    assert figures["latency_to_last_ms"]["max"] == figures["latency_to_last_ms"]["p50"] == 11_000
    assert figures["latency_to_first_ms"]["mean"] == 10_750
    assert figures["pbx"]["query_in_session_per_event"] == 0

    tracker.update(b, _update("6400", states[2]), 21.0)
    assert tracker.all_seen.is_set()


def test_a_folded_update_counts_the_change_it_skipped_as_missed() -> None:
    tracker = Tracker({"6400": 1})
    plan = RoomPlan(["6400"])
    states = _drive(tracker, plan, 3)
    subscriber = _subscriber(0, "6400")
    tracker.update(subscriber, _update("6400", states[0], "INITIAL"), 1.0)  # not a change
    tracker.update(subscriber, _update("6400", states[2]), 2.0)  # changes 0 and 1 folded
    tracker.update(subscriber, _update("6400", states[1]), 3.0)  # an older state after it

    assert tracker.initial == 1
    assert [change.seen for change in tracker.changes] == [0, 0, 1]
    assert tracker.unmatched == 1
    tracker.update(subscriber, _update("6400", frozenset({"1"})), 4.0)  # no change made it
    assert tracker.unmatched == 2


def test_plans_spread_subscribers_and_name_every_setting_they_change() -> None:
    rows = plans((100, 1000), events=50, rate=5.0, burst=100, poll_interval=2.0)
    assert [row.label for row in rows] == ["fanout/100", "fanout/1000", "fanout-poll/100"]
    poll = rows[-1]
    assert (poll.burst, poll.poll_interval) == (0, 2.0)
    assert poll.rate * 2 * 2.0 == poll.rooms  # a room changes once per two polls

    assert gateway_settings(rows[0]) == ({}, "")  # shipped defaults
    settings, label = gateway_settings(rows[1])
    assert settings == {"http_limits": {"max_connections": 1064}}
    assert "GATEWAY_MAX_CONNECTIONS=1064" in label
    settings, label = gateway_settings(poll)
    assert settings == {"live_source": "poll", "live_poll_interval": 2.0}
    assert "GATEWAY_LIVE_SOURCE=poll" in label

    assert addresses(1000) == [f"127.0.0.{i}" for i in range(2, 7)]  # 200 sockets each
    assert addresses(20) == ["127.0.0.2"]
    assert FanoutPlan("events", 20, 5, 6, 10.0).seconds > 0
