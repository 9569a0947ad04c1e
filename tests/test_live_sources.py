"""Where live changes come from: the TCP report channel, the poller, and the supervisor.

The real gateway's PBX session against the real simulator over loopback (its TCP report
port included); a recording sink stands in for the feed. Real time is only spent where the
simulator's own clock decides (a channel refused for a moment); the gateway's guard runs on
the stack's FakeClock and the poller on ticks the test gives (:class:`Ticks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from typing import Any

import httpx
import pytest

from gateway.errors import (
    ConfigError,
    PbxAuthError,
    PbxLockedOutError,
    PbxUnavailableError,
)
from gateway.live.event_source import Backoff, ChannelTarget, EventSource
from gateway.live.poller import Poller
from gateway.live.push_receiver import MAX_PUSH_BYTES
from gateway.live.supervisor import LiveHandle, LiveTiming, start_live
from gateway.pbx.report_channel import (
    ChannelCounts,
    ReportChannelError,
    open_report_channel,
)
from gateway.pbx.sessions_query import LiveSession
from gateway.secrets import Secret
from gateway.serving import LoopbackServer
from gateway.settings import PasswordSource, Settings
from gateway.simulator import DEMO_PASSWORD, DEMO_USERNAME, SimulatorConfig, SimulatorServer
from gateway.simulator.profiles import profile_config
from tests.gateway_stack import Stack, StackFactory
from tests.loopback import free_port
from tests.timing import eventually

BRIDGE = "6403"  # Support Bridge: moderators 4000, 4001, nobody waits
QUERY = "conference/query_in_session"
FAST = LiveTiming(backoff=Backoff(first=0.02, cap=0.05), reconcile_grace=0.01, login_timeout=2)


class RecordingSink:
    """A LiveSink that remembers every call and the state it leads to."""

    def __init__(self, watched: Collection[str] = ()) -> None:
        self.watched = set(watched)
        self.rooms: dict[str, LiveSession | None] = {}
        self.changes: list[tuple[str, LiveSession | None]] = []
        self.listings: list[tuple[dict[str, LiveSession], Collection[str] | None]] = []
        self.resyncs: list[bool] = []

    def room_changed(self, number: str, session: LiveSession | None) -> None:
        self.changes.append((number, session))
        self.rooms[number] = session

    def rooms_listed(
        self,
        listing: Mapping[str, LiveSession],
        rooms: Collection[str] | None = None,
        *,
        resync: bool = False,
    ) -> None:
        self.listings.append((dict(listing), rooms))
        self.resyncs.append(resync)
        for number in set(self.rooms) | set(listing) if rooms is None else rooms:
            self.rooms[number] = listing.get(number)

    def watched_rooms(self) -> frozenset[str]:
        return frozenset(self.watched)

    def members(self, number: str) -> set[str]:
        session = self.rooms.get(number)
        return {m.number or "" for m in session.members} if session else set()


class Ticks:
    """A ``sleep`` that returns only when the test calls :meth:`tick`."""

    def __init__(self) -> None:
        self._waiting: list[asyncio.Future[None]] = []

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        try:
            await future
        finally:
            if future in self._waiting:  # cancelled while asleep
                self._waiting.remove(future)

    async def tick(self) -> None:
        """Let one sleeper go, and return once something sleeps again (the tick is done)."""
        await eventually(lambda: self._waiting, what="a sleeper")
        self._waiting.pop(0).set_result(None)
        await eventually(lambda: self._waiting, what="the next sleep")
        for _ in range(5):  # let a poll started by the tick reach the PBX and come back
            await asyncio.sleep(0.01)


@pytest.fixture
async def live(
    gateway_stack: StackFactory,
) -> AsyncIterator[Callable[..., Awaitable[tuple[Stack, LiveHandle]]]]:
    """Start a stack (its own live source off) and a supervisor of the test's on its session."""
    handles: list[LiveHandle] = []

    async def start(
        sink: RecordingSink,
        *,
        sim_config: SimulatorConfig | None = None,
        timing: LiveTiming = FAST,
        push_port: int | None = None,
        **settings: Any,
    ) -> tuple[Stack, LiveHandle]:
        # With push_port the app's session announces a push endpoint at its logins (its own
        # live source stays off); the test's supervisor serves it.
        push = {} if push_port is None else {"live_push_port": push_port}
        stack = await gateway_stack(sim_config=sim_config, live_push_bind="127.0.0.1", **push)
        runtime = stack.gateway_runtime()
        settings.setdefault("live_source", "auto")
        settings.setdefault("live_reconcile_interval", 3600.0)
        chosen = dataclasses.replace(runtime.settings, **settings)
        handle = start_live(
            chosen,
            runtime.session,
            sink,
            timing=timing,
            push=runtime.live_sources.supervisor.push,
            serve=LoopbackServer,
        )
        handles.append(handle)
        return stack, handle

    yield start
    for handle in handles:
        await handle.aclose()


def _events_up(handle: LiveHandle) -> Callable[[], bool]:
    supervisor = handle.supervisor
    return lambda: supervisor.events is not None and supervisor.events.connected


# --- events ------------------------------------------------------------------------------


async def test_events_reach_the_sink_with_no_query_per_event(live: Any) -> None:
    """Joins and leaves reach the sink as events (a mute sends none), with no PBX query."""
    sink = RecordingSink(watched={BRIDGE})
    stack, handle = await live(sink)
    await eventually(_events_up(handle), what="the report channel")
    assert handle.supervisor.kind == "events"
    await eventually(lambda: sink.listings, what="the resync")
    queries = stack.calls(QUERY)
    assert queries == 1  # the resync after connecting, nothing else

    stack.pbx.live_join(BRIDGE, "4000")
    stack.pbx.live_join(BRIDGE, "4001")
    await eventually(lambda: sink.members(BRIDGE) == {"4000", "4001"}, what="two joins")
    stack.pbx.live_mute(BRIDGE, "4001")  # no event: the number of participants is the same
    stack.pbx.live_leave(BRIDGE, "4000")
    await eventually(lambda: sink.members(BRIDGE) == {"4001"}, what="a leave")
    stack.pbx.live_leave(BRIDGE, "4001")
    await eventually(lambda: len(sink.changes) == 4, what="the last leave")

    assert sink.changes[-1] == (BRIDGE, None)  # an empty member list: nobody is in the room
    assert stack.calls(QUERY) == queries  # 0 PBX calls per event
    events = handle.supervisor.events
    assert events is not None
    assert events.counts.channel.statuses == 4
    assert events.counts.connects == 1
    assert stack.pbx.stats.live["report_logins_succeeded"] == 1


async def test_a_dropped_channel_reconnects_with_backoff_then_resyncs_once(live: Any) -> None:
    """A dropped, briefly refused channel: attempts counted, one resync each, the true state."""
    sink = RecordingSink(watched={BRIDGE})
    stack, handle = await live(sink)
    await eventually(_events_up(handle), what="the report channel")
    await eventually(lambda: len(sink.listings) == 1, what="the first resync")
    stack.pbx.live_join(BRIDGE, "4000")
    await eventually(lambda: sink.members(BRIDGE) == {"4000"}, what="the join")
    events = handle.supervisor.events
    assert events is not None

    # The channel breaks and stays refused for a moment; meanwhile people come and go.
    assert stack.pbx.drop_report_channel(refuse_seconds=0.4) == 1
    await eventually(lambda: not events.connected, what="the drop")
    stack.pbx.live_join(BRIDGE, "4001")
    stack.pbx.live_leave(BRIDGE, "4000")
    stack.pbx.live_join(BRIDGE, "4002", kind="ext")
    assert sink.members(BRIDGE) == {"4000"}  # nothing reached the sink: no channel

    await eventually(lambda: events.counts.connects == 2, what="the reconnect")
    await eventually(lambda: len(sink.listings) == 2, what="the resync")
    assert sink.members(BRIDGE) == {"4001", "4002"}  # the true state, from one query
    assert sink.listings[-1][1] is None  # a complete listing...
    assert sink.resyncs == [True, True]  # ...read after the channel came back: RESYNCED
    assert stack.calls(QUERY) == 2  # one resync per connection
    refused = stack.pbx.stats.live["report_refused"]
    assert refused >= 1
    assert events.counts.reconnects == refused + 1  # every attempt after the drop, counted
    assert stack.pbx.stats.live["report_logins_succeeded"] == 2


async def test_nobody_watching_means_no_resync_query(live: Any) -> None:
    """With no room watched, connecting costs no query_in_session; events still flow."""
    sink = RecordingSink()
    stack, handle = await live(sink)
    await eventually(_events_up(handle), what="the report channel")
    stack.pbx.live_join(BRIDGE, "4000")
    await eventually(lambda: sink.changes, what="the event")
    assert stack.calls(QUERY) == 0
    assert sink.listings == []


async def test_a_refused_report_login_waits_for_the_guard_and_never_locks(
    live: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused report login counts in the API guard: two tries in 30 minutes, never a lockout."""
    caplog.set_level(logging.DEBUG)
    sink = RecordingSink(watched={BRIDGE})
    wrong = "report-secret-that-is-wrong"
    # The API login works (right MD5); the report login's clear password does not.
    stack, handle = await live(
        sink,
        live_source="events",
        pbx_password=PasswordSource(clear=Secret(wrong)),
    )
    session = stack.gateway_runtime().session
    await eventually(lambda: stack.pbx.stats.live["report_logins_failed"] == 1, what="a refusal")
    # Forty simulated minutes: the guard allows one more try after its cool-down, and no
    # third with the same credentials; the PBX never counts five.
    live_stats = stack.pbx.stats.live
    stack.clock.advance(600)  # the cool-down ends: one more try is allowed
    await eventually(lambda: live_stats["report_logins_failed"] == 2, what="the second try")
    for _ in range(30):
        stack.clock.advance(60)
        await asyncio.sleep(0.02)  # the source asks the guard every 0.05 s meanwhile
    assert live_stats["report_logins_failed"] == 2
    assert stack.pbx.stats.live["report_logins_locked"] == 0
    assert stack.pbx.lockout.locked_addresses(stack.pbx.now()) == []
    assert session.failed_logins == 2
    assert isinstance(session.blocked_reason, PbxAuthError)  # API logins wait too
    events = handle.supervisor.events
    assert events is not None and events.counts.refusals == 2
    assert not handle.task.done()  # it waits (for new credentials), it does not spin
    assert wrong not in caplog.text
    assert DEMO_PASSWORD not in caplog.text


async def test_a_locked_address_backs_the_report_login_off(live: Any) -> None:
    """IP locked on the report login: recorded as a lockout in the guard, no retry within it."""
    sink = RecordingSink(watched={BRIDGE})
    stack, handle = await live(sink, sim_config=SimulatorConfig(lockout_threshold=1))
    await eventually(_events_up(handle), what="the report channel")
    await handle.aclose()
    # Another integration on this address fails a login: the PBX locks the address.
    await stack.sim_login_with_wrong_password()
    runtime = stack.gateway_runtime()
    chosen = dataclasses.replace(runtime.settings, live_source="events")
    handle = start_live(chosen, runtime.session, sink, timing=FAST)
    try:
        await eventually(lambda: stack.pbx.stats.live["report_logins_locked"] == 1, what="locked")
        await eventually(
            lambda: isinstance(runtime.session.blocked_reason, PbxLockedOutError),
            what="the lockout in the guard",
        )
        for _ in range(9):  # nine simulated minutes of the ten-minute back-off
            stack.clock.advance(60)
            await asyncio.sleep(0.02)
        assert stack.pbx.stats.live["report_logins_locked"] == 1
        assert stack.pbx.stats.live["report_connections"] == 2  # the first channel, and one
    finally:
        await handle.aclose()


async def test_auto_falls_back_to_polling_after_one_refused_report_login(live: Any) -> None:
    """Under auto, one refused report login means polling, and no second report login."""
    sink = RecordingSink(watched={BRIDGE})
    stack, handle = await live(sink, pbx_password=PasswordSource(clear=Secret("wrong")))
    await eventually(lambda: handle.supervisor.kind == "poll", what="the fall-back")
    assert stack.pbx.stats.live["report_logins_failed"] == 1


async def test_an_unreachable_report_port_means_polling_in_auto(live: Any) -> None:
    """Nothing listens on the report port: auto polls."""
    sink = RecordingSink(watched={BRIDGE})
    stack, handle = await live(sink, pbx_report_port=1)  # nothing listens there
    await eventually(lambda: handle.supervisor.kind == "poll", what="the fall-back")
    assert stack.pbx.stats.live["report_connections"] == 0


async def test_an_md5_only_password_means_polling(live: Any) -> None:
    """Only the password's MD5 configured: no report login is possible, auto polls."""
    sink = RecordingSink(watched={BRIDGE})
    stack, handle = await live(sink, pbx_password=PasswordSource(md5=Secret("0" * 32)))
    await eventually(lambda: handle.supervisor.kind == "poll", what="the fall-back")
    assert stack.pbx.stats.live["report_connections"] == 0


async def test_http_push_transport_means_polling(live: Any) -> None:
    """The login says HTTP push and no push port is set: auto polls, no TCP report login."""
    sink = RecordingSink(watched={BRIDGE})
    config = SimulatorConfig(transport="HTTP")
    stack, handle = await live(sink, sim_config=config)
    await eventually(lambda: handle.supervisor.kind == "poll", what="the fall-back")
    assert stack.gateway_runtime().session.report_transport == "HTTP"
    assert stack.pbx.stats.live["report_connections"] == 0


# --- HTTP push ----------------------------------------------------------------------------


async def test_pushed_events_reach_the_sink_with_no_query_per_event(live: Any) -> None:
    """HTTP push: each pushed ConferenceStatus reaches the sink, with no PBX query."""
    sink = RecordingSink(watched={BRIDGE})
    config = SimulatorConfig(transport="HTTP")
    stack, handle = await live(sink, sim_config=config, push_port=free_port())
    await eventually(_events_up(handle), what="the push listener")
    assert handle.supervisor.kind == "push"
    await eventually(lambda: sink.listings, what="the resync")
    assert stack.calls(QUERY) == 1

    live_stats = stack.pbx.stats.live
    # Each push is a POST of its own, so two at once may arrive in either order: one change
    # at a time here (out of order, the reconciliation would correct the room).
    steps: list[tuple[int, Callable[[], object], set[str]]] = [
        (1, lambda: stack.pbx.live_join(BRIDGE, "4000"), {"4000"}),
        (2, lambda: stack.pbx.live_join(BRIDGE, "4001"), {"4000", "4001"}),
        (3, lambda: stack.pbx.live_leave(BRIDGE, "4000"), {"4001"}),
        (4, lambda: stack.pbx.live_leave(BRIDGE, "4001"), set()),
    ]
    for pushed, change, members in steps:
        change()
        await eventually(lambda: live_stats["push_events_sent"] == pushed, what="the push")  # noqa: B023
        assert sink.members(BRIDGE) == members
    assert sink.rooms[BRIDGE] is None
    assert stack.calls(QUERY) == 1  # 0 PBX calls per event
    assert live_stats["push_failures"] == live_stats["report_connections"] == 0


async def test_the_push_receiver_answers_only_the_pbx_shape(live: Any) -> None:
    """Only POST on the secret path, bounded, JSON, is taken; only a status reaches the sink."""
    sink = RecordingSink(watched={BRIDGE})
    config = SimulatorConfig(transport="HTTP")
    port = free_port()
    _, handle = await live(sink, sim_config=config, push_port=port)
    await eventually(_events_up(handle), what="the push listener")
    push = handle.supervisor.push
    assert push is not None and push.secret not in repr(push)
    url = f"http://127.0.0.1:{port}{push.path}"
    guess = f"http://127.0.0.1:{port}/live-push/guess"
    status = {"event": "ConferenceStatus", "conferencenumber": "6401", "members": []}
    async with httpx.AsyncClient() as client:
        answers = [
            (await client.post(guess, json=status)).status_code,
            (await client.get(url)).status_code,
            (await client.post(url, content=b"x" * (MAX_PUSH_BYTES + 1))).status_code,
            (await client.post(url, content=b"not json")).status_code,
            (await client.post(url, json={"event": "ExtensionStatus"})).status_code,
            (await client.post(url, json=[1])).status_code,
        ]
        assert answers == [404, 405, 413, 400, 200, 200]
        assert not sink.changes
        assert (await client.post(url, json=status)).status_code == 200
    assert sink.changes == [("6401", None)]
    events = handle.supervisor.events
    assert events is not None
    counts = events.counts.channel
    assert (counts.statuses, counts.other_events, counts.unreadable_lines) == (1, 1, 2)


async def test_a_push_port_taken_means_polling(live: Any) -> None:
    """The push port cannot be listened on: auto polls."""
    sink = RecordingSink(watched={BRIDGE})
    async with LoopbackServer(_nothing) as taken:
        _, handle = await live(
            sink, sim_config=SimulatorConfig(transport="HTTP"), push_port=taken.port
        )
        await eventually(lambda: handle.supervisor.kind == "poll", what="the fall-back")


async def _nothing(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        message = await receive()
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        del message
        await send({"type": "lifespan.shutdown.complete"})


# --- reconciliation ----------------------------------------------------------------------


async def test_events_switched_off_on_the_pbx_are_caught_and_polling_takes_over(
    live: Any,
) -> None:
    """A PBX that logs the channel in and sends nothing: reconciliation switches to polling."""
    sink = RecordingSink(watched={BRIDGE})
    ticks = Ticks()
    timing = dataclasses.replace(FAST, sleep=ticks.sleep)
    stack, handle = await live(
        sink, sim_config=SimulatorConfig(events=False), timing=timing, live_reconcile_interval=30
    )
    await eventually(_events_up(handle), what="the report channel (it logs in fine)")
    await eventually(lambda: len(sink.listings) == 1, what="the resync")
    await ticks.tick()  # a reconciliation: nothing changed, nothing missed
    assert handle.supervisor.kind == "events"
    assert handle.supervisor.reconciler.checks == 1

    queries = stack.calls(QUERY)
    stack.pbx.live_join(BRIDGE, "4000")  # no event comes
    await ticks.tick()  # the reconciliation finds it...
    await ticks.tick()  # ...the grace passes without an event, a fresh listing agrees...
    await ticks.tick()  # ...and so does a second grace
    assert stack.calls(QUERY) == queries + 2
    await eventually(lambda: handle.supervisor.kind == "poll", what="the switch")
    assert sink.members(BRIDGE) == {"4000"}
    assert handle.supervisor.switched_to_polling

    polls = handle.supervisor.poller.counts.polls
    stack.pbx.live_leave(BRIDGE, "4000")
    await ticks.tick()
    assert handle.supervisor.poller.counts.polls == polls + 1
    assert sink.rooms[BRIDGE] is None


async def test_under_events_only_reconciliation_corrects_the_sink_and_keeps_the_channel(
    live: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """GATEWAY_LIVE_SOURCE=events: a missed change is corrected, logged once; no polling."""
    sink = RecordingSink(watched={BRIDGE})
    ticks = Ticks()
    timing = dataclasses.replace(FAST, sleep=ticks.sleep)
    stack, handle = await live(
        sink, sim_config=SimulatorConfig(events=False), timing=timing, live_source="events"
    )
    await eventually(_events_up(handle), what="the report channel")
    await eventually(lambda: len(sink.listings) == 1, what="the resync")
    for member in ("4000", "4001"):
        stack.pbx.live_join(BRIDGE, member)  # no event comes
        for _ in range(3):
            await ticks.tick()
        assert member in sink.members(BRIDGE)
    assert handle.supervisor.kind == "events"
    assert handle.supervisor.poller.counts.polls == 0
    assert caplog.text.count("no switch to polling") == 1


async def test_no_event_for_an_emptied_room_is_caught_by_reconciliation(live: Any) -> None:
    """No event when the last member leaves: reconciliation shows the room empty."""
    sink = RecordingSink(watched={BRIDGE})
    ticks = Ticks()
    timing = dataclasses.replace(FAST, sleep=ticks.sleep)
    stack, handle = await live(
        sink, sim_config=SimulatorConfig(empty_room_event=False), timing=timing
    )
    await eventually(_events_up(handle), what="the report channel")
    stack.pbx.live_join(BRIDGE, "4000")
    await eventually(lambda: sink.members(BRIDGE) == {"4000"}, what="the join event")
    stack.pbx.live_leave(BRIDGE, "4000")  # the room empties: no event
    await asyncio.sleep(0.05)
    assert sink.members(BRIDGE) == {"4000"}
    for _ in range(3):  # the reconciliation, then two graces around a fresh listing
        await ticks.tick()
    await eventually(lambda: sink.rooms[BRIDGE] is None, what="the empty room")
    assert handle.supervisor.kind == "poll"


async def test_an_event_on_its_way_is_not_taken_for_a_missed_one(live: Any) -> None:
    """A difference that an event settles within the grace causes no switch."""
    sink = RecordingSink(watched={BRIDGE})
    ticks = Ticks()
    timing = dataclasses.replace(FAST, sleep=ticks.sleep)
    stack, handle = await live(sink, timing=timing)
    await eventually(_events_up(handle), what="the report channel")
    await eventually(lambda: len(sink.listings) == 1, what="the resync")
    events = handle.supervisor.events
    assert events is not None
    # The listing sees a member the events have not told yet (held back here): the grace
    # lets the event arrive, and no switch happens.
    stack.pbx.live_join(BRIDGE, "4000")
    await eventually(lambda: sink.members(BRIDGE) == {"4000"}, what="the event")
    events.known[BRIDGE] = None  # as if the event were still on its way
    await ticks.tick()  # the reconciliation sees a difference and waits the grace
    events.known[BRIDGE] = sink.rooms[BRIDGE]  # the event arrives during the grace
    await ticks.tick()
    assert handle.supervisor.kind == "events"


async def test_a_later_change_during_the_grace_is_not_taken_for_a_missed_one(live: Any) -> None:
    """Events that moved past the first listing during the grace: a fresh listing agrees."""
    sink = RecordingSink(watched={BRIDGE})
    ticks = Ticks()
    timing = dataclasses.replace(FAST, sleep=ticks.sleep)
    stack, handle = await live(sink, timing=timing)
    await eventually(_events_up(handle), what="the report channel")
    await eventually(lambda: len(sink.listings) == 1, what="the resync")
    events = handle.supervisor.events
    assert events is not None
    stack.pbx.live_join(BRIDGE, "4000")
    await eventually(lambda: sink.members(BRIDGE) == {"4000"}, what="the event")
    events.known[BRIDGE] = None  # as if the join's event were still on its way
    queries = stack.calls(QUERY)
    await ticks.tick()  # the listing ({4000}) differs: the grace
    stack.pbx.live_join(BRIDGE, "4001")  # its event comes during the grace
    await eventually(lambda: sink.members(BRIDGE) == {"4000", "4001"}, what="the later event")
    await ticks.tick()  # still unlike the first listing; a fresh one agrees with the events
    assert handle.supervisor.kind == "events"
    assert stack.calls(QUERY) == queries + 2


# --- the poller --------------------------------------------------------------------------


async def test_the_poller_asks_only_while_rooms_are_watched_one_call_per_tick(
    live: Any,
) -> None:
    """The poller makes one query per tick for the watched rooms, none while nobody watches."""
    sink = RecordingSink()
    ticks = Ticks()
    timing = dataclasses.replace(FAST, sleep=ticks.sleep)
    stack, handle = await live(sink, timing=timing, live_source="poll")
    for _ in range(3):
        await ticks.tick()
    assert stack.calls(QUERY) == 0  # nobody watches: no call at all
    assert handle.supervisor.kind == "poll"

    sink.watched.add(BRIDGE)
    stack.pbx.live_join(BRIDGE, "4000")
    await ticks.tick()
    assert stack.calls(QUERY) == 1
    assert sink.members(BRIDGE) == {"4000"}
    assert sink.listings[-1][1] == frozenset({BRIDGE})  # a poll of the watched rooms
    assert sink.resyncs[-1] is False  # CHANGED, not RESYNCED
    stack.pbx.live_leave(BRIDGE, "4000")
    await ticks.tick()
    assert stack.calls(QUERY) == 2
    assert sink.rooms[BRIDGE] is None

    sink.watched.clear()
    await ticks.tick()
    assert stack.calls(QUERY) == 2
    assert stack.pbx.stats.live["report_connections"] == 0  # poll: no report channel


async def test_a_failing_poll_is_logged_once_and_tried_again_next_tick(
    live: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A PBX that is down: each tick tries once, the failure is logged once."""
    sink = RecordingSink(watched={BRIDGE})
    ticks = Ticks()
    timing = dataclasses.replace(FAST, sleep=ticks.sleep)
    stack, handle = await live(sink, timing=timing, live_source="poll")
    stack.pbx.live_join(BRIDGE, "4000")
    stack.sim.go_down()
    poller = handle.supervisor.poller
    for failed in (1, 2, 3):
        await ticks.tick()
        await eventually(lambda: poller.counts.failed == failed, what="a failed poll")  # noqa: B023
    assert poller.counts.polls == 3
    assert caplog.text.count("poll failed") == 1
    assert sink.listings == []


async def test_the_poller_skips_a_tick_while_its_call_is_in_flight() -> None:
    """A call still running when the next tick comes: that tick is skipped, not queued."""
    # A query the test finishes by hand: only a stand-in can be held mid-call.
    gate: asyncio.Future[dict[str, LiveSession]] = asyncio.get_running_loop().create_future()
    calls: list[list[str]] = []

    async def query(rooms: list[str]) -> dict[str, LiveSession]:
        calls.append(rooms)
        return await gate

    ticks = Ticks()
    sink = RecordingSink(watched={BRIDGE, "6401"})
    poller = Poller(query, 2.0, sleep=ticks.sleep)
    task = asyncio.create_task(poller.run(sink))
    try:
        await ticks.tick()
        await ticks.tick()
        await ticks.tick()
        assert calls == [["6401", BRIDGE]]
        assert poller.counts.skipped == 2
        gate.set_result({})
        await asyncio.sleep(0.01)
        assert sink.listings == [({}, frozenset({BRIDGE, "6401"}))]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --- a PBX without live conferences ------------------------------------------------------


async def test_no_live_firmware_turns_the_source_off_with_one_log_line(
    live: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """No query_in_session (no-live): the source turns off after one call, with one log line."""
    sink = RecordingSink(watched={BRIDGE})
    stack, handle = await live(sink, sim_config=profile_config("no-live"))
    await asyncio.wait_for(handle.task, 5)
    assert handle.supervisor.kind == "off"
    assert stack.calls(QUERY) == 1  # the resync found the endpoint missing; no loop
    assert caplog.text.count("live updates are off") == 1
    assert "pbx-gateway doctor" in caplog.text


async def test_no_live_firmware_stops_the_poller_too(live: Any) -> None:
    """No query_in_session under poll: the poller stops after its first call."""
    sink = RecordingSink(watched={BRIDGE})
    ticks = Ticks()
    timing = dataclasses.replace(FAST, sleep=ticks.sleep)
    stack, handle = await live(
        sink, sim_config=profile_config("no-live"), timing=timing, live_source="poll"
    )
    await ticks.tick()
    await eventually(lambda: handle.supervisor.poller.absent is not None, what="the 10003")
    ticks._waiting.pop(0).set_result(None)  # the loop's next tick sees it and stops
    await asyncio.wait_for(handle.task, 5)
    assert handle.supervisor.kind == "off"
    assert stack.calls(QUERY) == 1


async def test_live_source_off_starts_nothing(live: Any) -> None:
    """GATEWAY_LIVE_SOURCE=off: no report connection, no query."""
    sink = RecordingSink(watched={BRIDGE})
    stack, handle = await live(sink, live_source="off")
    await asyncio.wait_for(handle.task, 5)
    assert handle.supervisor.kind == "off"
    assert stack.calls(QUERY) == 0
    assert stack.pbx.stats.live["report_connections"] == 0


# --- the app's wiring --------------------------------------------------------------------


async def test_the_app_runs_events_and_reports_them_in_metrics(
    gateway_stack: StackFactory,
) -> None:
    """The app's own supervisor runs the report channel and /metrics shows it."""
    stack = await gateway_stack(live_source="auto")
    supervisor = stack.gateway_runtime().live_sources.supervisor
    await eventually(
        lambda: supervisor.events is not None and supervisor.events.connected,
        what="the app's report channel",
    )
    stack.pbx.live_join(BRIDGE, "4000")
    await eventually(
        lambda: supervisor.events is not None and supervisor.events.counts.channel.statuses,
        what="the event",
    )
    text = (await stack.client.get("/metrics")).text
    assert 'gateway_live_source{kind="events"} 1.0' in text
    assert "gateway_live_events_total 1.0" in text
    assert "gateway_live_channel_reconnects_total 0.0" in text
    assert "gateway_live_polls_total 0.0" in text
    assert stack.calls(QUERY) == 0  # nobody subscribes on main yet: no resync, no poll


async def test_the_apps_feed_gets_events_with_no_query_and_a_resync_after_a_drop(
    gateway_stack: StackFactory,
) -> None:
    """Through the app: a subscriber sees CHANGED from an event (no query), RESYNCED after."""
    stack = await gateway_stack(live_source="auto")
    runtime = stack.gateway_runtime()
    supervisor = runtime.live_sources.supervisor
    await eventually(_events_up(runtime.live_sources), what="the app's report channel")
    async with runtime.feed.subscribe([BRIDGE]) as subscription:
        first = await asyncio.wait_for(anext(subscription), 5)
        assert (first.reason.name, first.session) == ("INITIAL", None)
        queries = stack.calls(QUERY)
        stack.pbx.live_join(BRIDGE, "4000")
        changed = await asyncio.wait_for(anext(subscription), 5)
        assert changed.reason.name == "CHANGED"
        assert changed.session is not None and changed.session.members[0].number == "4000"
        assert stack.calls(QUERY) == queries  # the event cost no PBX call

        events = supervisor.events
        assert events is not None
        stack.pbx.drop_report_channel()
        await eventually(lambda: not events.connected, what="the drop")
        stack.pbx.live_join(BRIDGE, "4001")  # while the channel is down: no event
        resynced = await asyncio.wait_for(anext(subscription), 10)
        assert resynced.reason.name == "RESYNCED"
        assert resynced.session is not None
        assert {m.number for m in resynced.session.members} == {"4000", "4001"}
        assert stack.calls(QUERY) == queries + 1  # one resync


async def test_the_app_takes_pushed_events_when_the_pbx_pushes(
    gateway_stack: StackFactory,
) -> None:
    """The app announces its push port at login and takes the pushed events."""
    port = free_port()
    stack = await gateway_stack(
        sim_config=SimulatorConfig(transport="HTTP"),
        live_source="auto",
        live_push_port=port,
        live_push_bind="127.0.0.1",
    )
    supervisor = stack.gateway_runtime().live_sources.supervisor
    await eventually(
        lambda: supervisor.events is not None and supervisor.events.connected,
        what="the push listener",
    )
    stack.pbx.live_join(BRIDGE, "4000")
    await eventually(lambda: stack.pbx.stats.live["push_events_sent"] == 1, what="the push")
    text = (await stack.client.get("/metrics")).text
    assert 'gateway_live_source{kind="push"} 1.0' in text
    assert "gateway_live_events_total 1.0" in text


# --- the report channel's reader, against a stand-in PBX ---------------------------------


@contextlib.asynccontextmanager
async def _stand_in(
    answer: bytes, lines: list[bytes], *, linger: bool = True
) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A report port that answers the login with ``answer`` (nothing: it closes) and then
    sends ``lines``, then waits for the client to close (``linger``) or closes at once; it
    waits for each connection to end before it goes."""
    logins: list[bytes] = []
    handlers: list[asyncio.Task[Any]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        block = b""
        while not block.endswith(b"\r\n\r\n"):
            chunk = await reader.read(1024)
            if not chunk:
                break
            block += chunk
        logins.append(block)
        if answer:
            writer.write(answer + b"".join(lines))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
                while linger and await reader.read(1024):  # until the client closes
                    pass
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], logins
        await asyncio.wait_for(asyncio.gather(*handlers), 5)


def _status(number: str, members: list[dict[str, Any]]) -> bytes:
    event = {"event": "ConferenceStatus", "conferencenumber": number, "members": members}
    return json.dumps(event).encode() + b"\r\n"


async def test_bad_lines_are_skipped_and_counted_and_a_huge_one_drops_the_channel() -> None:
    """Garbage, other events and unreadable statuses: skipped, counted; a huge line: dropped."""
    member = {"ext": {"number": "4000", "channelid": "PJSIP/4000-1", "memberstatus": "ANSWERED"}}
    lines = [
        b"not json at all\r\n",
        b"[1, 2]\r\n",
        b'{"event": "ExtensionStatus", "extension": "4000"}\r\n',
        b'{"event": "ConferenceStatus", "conferencenumber": "x"}\r\n',
        b"\r\n",
        _status(BRIDGE, [member]),
        b'{"event": "ConferenceStatus", "conferencenumber": "6401", "members": []}\r\n',
        b'{"event": "' + b"x" * 5000 + b'"}\r\n',
        _status("6402", [member]),  # after the huge line: never read
    ]
    counts = ChannelCounts()
    seen = []
    async with _stand_in(b"Response: Success\r\n\r\n", lines) as (port, logins):
        channel = await open_report_channel(
            "127.0.0.1", port, "api", Secret("pw"), max_line=4096, counts=counts
        )
        with pytest.raises(ReportChannelError, match="longer than the bound"):
            async for status in channel.statuses():
                seen.append(status)
        await channel.close()
    assert [(s.number, s.session is None) for s in seen] == [(BRIDGE, False), ("6401", True)]
    assert (counts.unreadable_lines, counts.other_events, counts.lines_too_long) == (3, 1, 1)
    assert counts.statuses == 2
    assert logins == [b"Action: login\r\nUsername: api\r\nSecret: pw\r\nVersion: 2.0.0\r\n\r\n"]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"Response: Error\r\nMessage: Authentication failed\r\n\r\n", PbxAuthError),
        (b"Response: Error\r\nMessage: IP locked\r\n\r\n", PbxLockedOutError),
        (b"", ReportChannelError),  # closed before answering
        (b"x" * 5000 + b"\r\n\r\n", ReportChannelError),  # not the PBX's answer
    ],
)
async def test_login_answers(answer: bytes, error: type[Exception]) -> None:
    """Each login answer is told apart, and no error holds the secret."""
    async with _stand_in(answer, []) as (port, _):
        with pytest.raises(error) as caught:
            await open_report_channel("127.0.0.1", port, "api", Secret("the-secret"))
    assert "the-secret" not in str(caught.value)
    assert isinstance(caught.value, PbxUnavailableError) == (error is ReportChannelError)


def test_backoff_doubles_to_its_cap_with_jitter_in_the_upper_half() -> None:
    """Each delay lies in [base/2, base], base doubling from ``first`` up to ``cap``."""
    backoff, rng = Backoff(first=1.0, cap=60.0), random.Random(7)
    for attempt in range(12):
        base = min(60.0, 2.0**attempt)
        assert base / 2 <= backoff.delay(attempt, rng) <= base
    assert backoff.delay(10_000, rng) <= 60.0


async def test_a_channel_that_drops_at_once_keeps_backing_off(gateway_stack: StackFactory) -> None:
    """A PBX that accepts the login and closes at once: each wait longer, up to the cap."""
    stack = await gateway_stack()
    delays: list[float] = []

    async def recording_sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(0)

    async with _stand_in(b"Response: Success\r\n\r\n", [], linger=False) as (port, logins):
        source = EventSource(
            stack.gateway_runtime().session,
            ChannelTarget("127.0.0.1", port, "api", lambda: Secret("pw")),
            _no_resync,
            backoff=Backoff(first=1.0, cap=8.0),
            sleep=recording_sleep,
            clock=stack.clock,  # never moves: no connection counts as healthy
        )
        task = asyncio.create_task(source.run(RecordingSink()))
        try:
            await eventually(lambda: len(delays) >= 7, what="seven reconnects")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    bases = [min(8.0, 2.0**attempt) for attempt in range(7)]
    assert all(b / 2 <= d <= b for d, b in zip(delays, bases, strict=False))
    assert 7 <= source.counts.connects <= len(logins)  # one more may be under way at the end


async def _no_resync() -> dict[str, LiveSession]:
    raise AssertionError("nobody watches: no resync")


async def test_a_silent_report_port_times_out() -> None:
    """A report port that never answers the login: a bounded wait, then an error."""
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(1024):  # reads the login, answers nothing, until closed
            pass
        writer.close()
        await writer.wait_closed()
        done.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(ReportChannelError, match="no answer"):
            await open_report_channel("127.0.0.1", port, "api", Secret("pw"), login_timeout=0.1)
        await asyncio.wait_for(done.wait(), 5)  # the client closed its side


async def test_the_simulator_accepts_the_clients_login() -> None:
    """The client's login block is what the simulator reads; keepalive is on."""
    async with SimulatorServer() as sim:
        channel = await open_report_channel(
            "127.0.0.1", sim.report_port, DEMO_USERNAME, Secret(DEMO_PASSWORD)
        )
        sock = channel._writer.get_extra_info("socket")  # white-box: the option set on it
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        await channel.close()
        with pytest.raises(PbxAuthError):
            await open_report_channel("127.0.0.1", sim.report_port, DEMO_USERNAME, Secret("x"))
        assert sim.state.stats.live["report_logins_succeeded"] == 1
        assert sim.state.stats.live["report_logins_failed"] == 1


# --- settings ----------------------------------------------------------------------------

ENV = {
    "PBX_URL": "http://pbx.test",
    "PBX_USERNAME": "api",
    "PBX_PASSWORD": "pw",
    "GATEWAY_AUTH": "none",
}


def test_live_settings_defaults_and_checks() -> None:
    """The live settings' defaults, the clear password's source, and each bad value named."""
    settings = Settings.from_environ(ENV)
    assert (settings.live_source, settings.pbx_report_port) == ("auto", 8333)
    assert (settings.live_poll_interval, settings.live_reconcile_interval) == (2.0, 30.0)
    assert settings.pbx_password.current_clear() == Secret("pw")
    assert (settings.live_push_port, settings.live_push_bind) == (None, "0.0.0.0")
    pushed = Settings.from_environ({**ENV, "GATEWAY_LIVE_PUSH_PORT": "8260"})
    assert pushed.live_push_port == 8260
    md5 = Settings.from_environ({**ENV, "PBX_PASSWORD": "", "PBX_PASSWORD_MD5": "a" * 32})
    assert md5.pbx_password.current_clear() is None
    for name, value in [
        ("GATEWAY_LIVE_SOURCE", "sometimes"),
        ("PBX_REPORT_PORT", "70000"),
        ("PBX_REPORT_PORT", "0"),
        ("GATEWAY_LIVE_POLL_INTERVAL", "0"),
        ("GATEWAY_LIVE_RECONCILE_INTERVAL", "0.5"),
        ("GATEWAY_LIVE_PUSH_PORT", "65536"),
    ]:
        with pytest.raises(ConfigError, match=name):
            Settings.from_environ({**ENV, name: value})
