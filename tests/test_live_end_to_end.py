"""Live conferences end to end: the real gateway with its own live sources, the simulated PBX
over loopback, and real subscription clients on both transports (a graphql-transport-ws
WebSocket and a multipart HTTP stream). Nothing here tells the feed anything: every update a
client sees came from the PBX's report channel, the reconciliation, the resync or the poller.

Members join and leave through the simulator (its state's ``live_*`` methods, as its admin
API calls them); moderators act through the gateway's mutations. Waits are for conditions
(``eventually``, a client's next update), never for time; what happened is read from counts:
``query_in_session`` calls at the PBX, report logins, the poller's ticks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any, Final

import pytest

from gateway.live.supervisor import LiveSupervisor
from gateway.security.identity import MODERATE, READ
from gateway.simulator import SimulatorConfig
from gateway.simulator.profiles import profile_config
from tests.gateway_stack import Stack, StackFactory, variant
from tests.live_clients import Frames, Multipart, Ws, connect_ws, members, multipart_stream
from tests.loopback import free_port
from tests.security_helpers import api_key_security, write_keys
from tests.timing import eventually

BRIDGE: Final = "6403"  # moderators 4000 and 4001 (the simulator's default rooms)
IN_SESSION: Final = "conference/query_in_session"
OPERATION: Final = "watch"
# The firmware variants that have live conferences (no-live has its own test below).
LIVE_PROFILES: Final = ["s-series-v2", "pre-2021", "k2", "k2-controls"]
PARTICIPANTS: Final = "ConferenceParticipantsInput"
INVITE: Final = "InviteParticipantsInput"


@dataclasses.dataclass
class Watchers:
    """One WebSocket subscriber and one multipart subscriber to the same rooms."""

    ws: Ws
    stream: Multipart

    async def next(self) -> dict[str, Any]:
        """The next update, which both subscribers must receive alike."""
        over_ws = await self.ws.update(OPERATION)
        over_http = await self.stream.update()
        assert over_ws == over_http
        return over_ws


@dataclasses.dataclass
class Live:
    """A running stack with its keys and the gateway's live supervisor."""

    stack: Stack
    keys: dict[str, str]
    frames: Frames
    exits: contextlib.AsyncExitStack

    @property
    def supervisor(self) -> LiveSupervisor:
        return self.stack.gateway_runtime().live_sources.supervisor

    def events_up(self) -> bool:
        events = self.supervisor.events
        return events is not None and events.connected

    async def watch(self, numbers: list[str]) -> Watchers:
        """Both subscribers, subscribed to ``numbers`` (closed with :meth:`close`)."""
        ws = await connect_ws(self.stack, self.frames)
        self.exits.push_async_callback(ws.connection.close)
        assert await ws.init({"x-api-key": self.keys["reader"]}) == {"type": "connection_ack"}
        await ws.subscribe(OPERATION, numbers)
        key = {"x-api-key": self.keys["reader"]}
        stream = await self.exits.enter_async_context(
            multipart_stream(self.stack, self.frames, numbers, headers=key)
        )
        return Watchers(ws, stream)

    async def close(self) -> None:
        """Close every client; returns once the feed has forgotten them."""
        await self.exits.aclose()
        feed = self.stack.gateway_runtime().feed
        await eventually(lambda: feed.subscribers == 0, what="the feed forgetting the clients")

    async def act(self, field: str, input_type: str, **fields: Any) -> None:
        """One moderator mutation, which must succeed."""
        document = f"mutation Act($input: {input_type}!) {{ {field}(input: $input) {{ number }} }}"
        moderator = {"x-api-key": self.keys["moderator"]}
        result = await self.stack.graphql(document, {"input": fields}, headers=moderator)
        assert "errors" not in result, result
        # The mutation has the feed re-read the room (one query_in_session); let that read
        # land before the next change, so each step's update is the step's own.
        await self.stack.gateway_runtime().feed.settled()


@pytest.fixture
async def live(gateway_stack: StackFactory, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start a stack whose gateway runs its own live source (``auto`` unless told)."""
    exits = contextlib.AsyncExitStack()

    async def start(sim_config: SimulatorConfig | None = None, **settings: Any) -> Live:
        security, keys = _keys(tmp_path, reader={READ}, moderator={READ, MODERATE})
        settings.setdefault("live_source", "auto")
        stack = await gateway_stack(sim_config=sim_config, security=security, **settings)
        return Live(stack, keys, Frames(), exits)

    yield start
    await exits.aclose()


def _keys(tmp_path: Path, **scopes: Iterable[str]) -> tuple[Any, dict[str, str]]:
    stored, plain = write_keys(tmp_path, {name: set(given) for name, given in scopes.items()})
    return api_key_security(stored), plain


def _pbx_members(stack: Stack, number: str) -> list[str]:
    """Who is in room ``number`` at the simulated PBX (the true state)."""
    session = stack.pbx.live.session(number)
    return [] if session is None else sorted(m.number for m in session.members)


def _audit(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    fields = [r.__dict__["fields"] for r in caplog.records if r.name == "gateway.audit"]
    return [(f["action"], f["outcome"]) for f in fields]


# --- events: join, leave, kick, invite, mute ------------------------------------------------


@pytest.mark.parametrize("pbx_profile", LIVE_PROFILES, indirect=True)
async def test_events_reach_every_subscriber_on_both_transports(
    live: Callable[..., Any], pbx_profile: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Over the TCP report channel: a join, a leave, a kick and an answered invite each reach
    both subscribers as one CHANGED update with the room's participants. Joins and leaves
    cost no PBX call (events, not polling); each moderator action costs one re-read. A mute
    is applied at the PBX and audited, and sends nothing (the PBX's listing has no mute
    state): the next update either subscriber gets is the following join's."""
    # Invitees ring until told to pick up, so the invite and the answer are two steps.
    on = await live(SimulatorConfig(invitees_answer=False))
    stack = on.stack
    await eventually(on.events_up, what="the report channel")
    assert on.supervisor.kind == "events"
    watchers = await on.watch([BRIDGE])
    first = await watchers.next()
    assert (first["number"], first["reason"], first["session"]) == (BRIDGE, "INITIAL", None)
    queries = stack.calls(IN_SESSION)  # the INITIAL read's

    stack.pbx.live_join(BRIDGE, "4001")  # a moderator
    joined = await watchers.next()
    assert (joined["reason"], members(joined)) == ("CHANGED", ["4001"])
    assert joined["session"]["participants"][0]["status"] == "JOINED"
    stack.pbx.live_join(BRIDGE, "4009")
    assert members(await watchers.next()) == ["4001", "4009"]
    stack.pbx.live_leave(BRIDGE, "4009")
    left = await watchers.next()
    assert (left["reason"], members(left)) == ("CHANGED", ["4001"])
    stack.pbx.live_join(BRIDGE, "4009")
    assert members(await watchers.next()) == ["4001", "4009"]
    assert stack.calls(IN_SESSION) == queries  # four events, no PBX call

    with caplog.at_level(logging.INFO, logger="gateway.audit"):
        await on.act("removeParticipants", PARTICIPANTS, number=BRIDGE, operator="4001",
                     members=["4009"])  # fmt: skip
        kicked = await watchers.next()
        assert (kicked["reason"], members(kicked)) == ("CHANGED", ["4001"])

        await on.act("inviteParticipants", INVITE, number=BRIDGE, operator="4001",
                     members=["4020"])  # fmt: skip
        assert _pbx_members(stack, BRIDGE) == ["4001"]  # ringing: not in the room yet
        stack.pbx.live_answer(BRIDGE, "4020")
        invited = await watchers.next()
        assert (invited["reason"], members(invited)) == ("CHANGED", ["4001", "4020"])
        statuses = {p["number"]: p["status"] for p in invited["session"]["participants"]}
        assert statuses == {"4001": "JOINED", "4020": "INVITED"}

        await on.act("muteParticipants", PARTICIPANTS, number=BRIDGE, operator="4001",
                     members=["4020"])  # fmt: skip
    muted = {m.number: m.muted for m in stack.pbx.live.session(BRIDGE).members}
    assert muted == {"4001": False, "4020": True}  # applied at the PBX
    mute_endpoint = (
        "conference/mute"
        if variant(pbx_profile).member_controls == "k2"
        else "conference/mute_member"
    )
    assert stack.calls(mute_endpoint) == 1
    assert _audit(caplog) == [
        ("conference.remove", "applied"),
        ("conference.invite", "applied"),
        ("conference.mute", "applied"),
    ]
    stack.pbx.live_join(BRIDGE, "4010")
    after_mute = await watchers.next()  # the join's, not one from the mute
    assert (after_mute["reason"], members(after_mute)) == ("CHANGED", ["4001", "4010", "4020"])
    # One event per change in the room's count (four, the kick, the answer, this join), none
    # for the ringing invite or the mute, and the gateway read each of them.
    assert stack.pbx.stats.live["tcp_events_sent"] == 7
    events = on.supervisor.events
    assert events is not None and events.counts.channel.statuses == 7

    # Joins and leaves cost nothing; each moderator action one re-read (its own, at once).
    assert stack.calls(IN_SESSION) == queries + 3
    supervisor = on.supervisor
    assert (supervisor.kind, supervisor.poller.counts.polls) == ("events", 0)
    assert supervisor.reconciler.checks == 0
    await on.close()
    on.frames.check_clean(stack)


async def test_pushed_events_reach_every_subscriber_with_no_query_per_event(
    live: Callable[..., Any],
) -> None:
    """The PBX's report method is HTTP push: the gateway announces its receiver at login,
    and each join and leave the PBX pushes reaches both subscribers as CHANGED, with no
    PBX call per event."""
    on = await live(
        SimulatorConfig(transport="HTTP"),
        live_push_port=free_port(),
        live_push_bind="127.0.0.1",
    )
    stack = on.stack
    await eventually(on.events_up, what="the push receiver")
    assert on.supervisor.kind == "push"
    watchers = await on.watch([BRIDGE])
    assert (await watchers.next())["reason"] == "INITIAL"
    queries = stack.calls(IN_SESSION)
    stack.pbx.live_join(BRIDGE, "4000")
    joined = await watchers.next()
    assert (joined["reason"], members(joined)) == ("CHANGED", ["4000"])
    stack.pbx.live_leave(BRIDGE, "4000")
    left = await watchers.next()
    assert (left["reason"], left["session"]) == ("CHANGED", None)
    assert stack.pbx.stats.live["push_events_sent"] == 2
    assert stack.calls(IN_SESSION) == queries
    await on.close()
    on.frames.check_clean(stack)


# --- the event channel dropped and restored --------------------------------------------------


@pytest.mark.parametrize("pbx_profile", LIVE_PROFILES, indirect=True)
async def test_a_dropped_channel_is_restored_and_subscribers_end_on_the_true_state(
    live: Callable[..., Any], pbx_profile: str
) -> None:
    """The PBX drops the report channel (and refuses it for a moment); members join and
    leave while it is down, unreported. Once the gateway is logged in again, both
    subscribers receive one RESYNCED update with the PBX's true state, from exactly one
    ``query_in_session``."""
    on = await live()
    stack = on.stack
    stack.pbx.live_join(BRIDGE, "4000")
    await eventually(on.events_up, what="the report channel")
    watchers = await on.watch([BRIDGE])
    first = await watchers.next()
    assert (first["reason"], members(first)) == ("INITIAL", ["4000"])
    logins = stack.pbx.stats.live["report_logins_succeeded"]
    queries = stack.calls(IN_SESSION)

    # No await in between: every change below is made while no report connection exists.
    assert stack.pbx.drop_report_channel(refuse_seconds=0.3) == 1
    stack.pbx.live_join(BRIDGE, "4001")
    stack.pbx.live_join(BRIDGE, "4009")
    stack.pbx.live_leave(BRIDGE, "4000")
    stack.pbx.live_join(BRIDGE, "4010")
    stack.pbx.live_leave(BRIDGE, "4010")

    resynced = await watchers.next()
    assert resynced["reason"] == "RESYNCED"
    assert members(resynced) == _pbx_members(stack, BRIDGE) == ["4001", "4009"]
    assert stack.pbx.stats.live["report_logins_succeeded"] == logins + 1
    assert stack.calls(IN_SESSION) == queries + 1  # exactly one resync
    events = on.supervisor.events
    assert events is not None and events.connected and on.supervisor.kind == "events"

    stack.pbx.live_leave(BRIDGE, "4009")  # the restored channel carries events again
    after = await watchers.next()
    assert (after["reason"], members(after)) == ("CHANGED", ["4001"])
    assert stack.calls(IN_SESSION) == queries + 1
    await on.close()
    on.frames.check_clean(stack)


# --- a PBX without events ---------------------------------------------------------------------


@pytest.mark.parametrize("pbx_profile", LIVE_PROFILES, indirect=True)
async def test_without_events_the_gateway_ends_on_the_poller_only_while_watched(
    live: Callable[..., Any], pbx_profile: str
) -> None:
    """Events off in the PBX's API settings: the report login works and nothing comes. The
    reconciliation finds the first unreported join (sent to both subscribers as CHANGED)
    and the gateway switches to polling; the next join arrives by a poll. Once the clients
    are gone, ticks go by with no poll and no PBX call."""
    on = await live(
        SimulatorConfig(events=False), live_reconcile_interval=1.0, live_poll_interval=0.1
    )
    stack = on.stack
    await eventually(on.events_up, what="the (silent) report channel")
    supervisor = on.supervisor
    watchers = await on.watch([BRIDGE])
    assert (await watchers.next())["reason"] == "INITIAL"
    events = supervisor.events
    assert events is not None
    # The first reconciliation takes the room's state as its baseline; a change after it
    # is one the events should have told.
    await eventually(lambda: BRIDGE in events.known, what="the reconciliation's baseline")

    stack.pbx.live_join(BRIDGE, "4001")
    found = await watchers.next()
    assert (found["reason"], members(found)) == ("CHANGED", ["4001"])
    await eventually(lambda: supervisor.kind == "poll", what="the switch to polling")
    assert supervisor.switched_to_polling
    assert stack.pbx.stats.live["tcp_events_sent"] == 0

    stack.pbx.live_join(BRIDGE, "4009")
    polled = await watchers.next()
    assert (polled["reason"], members(polled)) == ("CHANGED", ["4001", "4009"])
    poller = supervisor.poller
    assert poller.counts.polls >= 1

    await on.close()
    ticks = poller.counts.ticks

    def settled() -> bool:  # a tick since, and no poll of before it still on its way
        return poller.counts.ticks > ticks and (
            poller._in_flight is None or poller._in_flight.done()
        )

    await eventually(settled, what="a tick with no poll under way")
    polls, queries, ticks = poller.counts.polls, stack.calls(IN_SESSION), poller.counts.ticks
    await eventually(lambda: poller.counts.ticks >= ticks + 3, what="three more ticks")
    assert (poller.counts.polls, stack.calls(IN_SESSION)) == (polls, queries)


async def test_events_only_without_events_corrects_by_reconciliation_and_never_polls(
    live: Callable[..., Any],
) -> None:
    """GATEWAY_LIVE_SOURCE=events against a PBX that sends none: the reconciliation finds
    the unreported join and sends it to both subscribers; the channel stays and no poll
    loop ever runs."""
    on = await live(
        SimulatorConfig(events=False), live_source="events", live_reconcile_interval=1.0
    )
    stack = on.stack
    await eventually(on.events_up, what="the (silent) report channel")
    supervisor = on.supervisor
    watchers = await on.watch([BRIDGE])
    assert (await watchers.next())["reason"] == "INITIAL"
    events = supervisor.events
    assert events is not None
    await eventually(lambda: BRIDGE in events.known, what="the reconciliation's baseline")
    stack.pbx.live_join(BRIDGE, "4001")
    found = await watchers.next()
    assert (found["reason"], members(found)) == ("CHANGED", ["4001"])
    assert (supervisor.kind, supervisor.switched_to_polling) == ("events", False)
    assert (supervisor.poller.counts.ticks, supervisor.poller.counts.polls) == (0, 0)
    assert events.connected
    await on.close()


async def test_without_events_a_stale_initial_is_corrected_at_the_first_reconciliation(
    live: Callable[..., Any],
) -> None:
    """Events off; the session cache holds a listing read before a member joined (within
    its TTL: the test clock never moves it), so the subscribers' INITIAL says nobody. The
    reconciliation's first look takes the PBX's answer as its baseline, and must send it
    to the subscribers: otherwise they keep the stale state until some later change."""
    on = await live(SimulatorConfig(events=False), live_reconcile_interval=1.0)
    stack = on.stack
    await eventually(on.events_up, what="the (silent) report channel")
    document = f'{{ conference(number: "{BRIDGE}") {{ session {{ participants {{ number }} }} }} }}'
    read = await stack.graphql(document, headers={"x-api-key": on.keys["reader"]})
    assert read == {"data": {"conference": {"session": None}}}
    stack.pbx.live_join(BRIDGE, "4001")  # no event, and the cache's listing is still fresh
    watchers = await on.watch([BRIDGE])
    first = await watchers.next()
    assert (first["reason"], first["session"]) == ("INITIAL", None)  # the cached listing's

    corrected = await watchers.next()
    assert (corrected["reason"], members(corrected)) == ("CHANGED", ["4001"])
    assert members(corrected) == _pbx_members(stack, BRIDGE)
    await on.close()


async def test_no_live_firmware_says_feature_unavailable_and_runs_no_poll_loop(
    live: Callable[..., Any],
) -> None:
    """A firmware without ``query_in_session`` (profile no-live): each subscriber's INITIAL
    update carries FEATURE_UNAVAILABLE at the session's path, the supervisor turns live
    updates off at its first look, and no poll loop ever runs."""
    on = await live(profile_config("no-live"), live_reconcile_interval=1.0, live_poll_interval=0.1)
    stack = on.stack
    supervisor = on.supervisor
    ws = await connect_ws(stack, on.frames)
    on.exits.push_async_callback(ws.connection.close)
    await ws.init({"x-api-key": on.keys["reader"]})
    await ws.subscribe(OPERATION, [BRIDGE])
    message = await ws.receive()
    assert message["type"] == "next"
    _check_unavailable(message["payload"])
    key = {"x-api-key": on.keys["reader"]}
    stream = await on.exits.enter_async_context(
        multipart_stream(stack, on.frames, [BRIDGE], headers=key)
    )
    part = await stream.part()
    assert part is not None
    _check_unavailable(part["payload"])

    # With somebody watching, the reconciliation's first look meets the missing endpoint.
    await eventually(lambda: supervisor.kind == "off", what="live updates turned off")
    assert (supervisor.poller.counts.ticks, supervisor.poller.counts.polls) == (0, 0)
    await on.close()


def _check_unavailable(payload: dict[str, Any]) -> None:
    update = payload["data"]["conferenceSessions"]
    assert (update["number"], update["reason"], update["session"]) == (BRIDGE, "INITIAL", None)
    errors = payload["errors"]
    assert [e["path"] for e in errors] == [["conferenceSessions", "session"]]
    assert [e["extensions"]["code"] for e in errors] == ["FEATURE_UNAVAILABLE"]
