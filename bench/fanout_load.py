"""The fan-out load, run as its own process: ``python -m bench.fanout_load SPEC.json OUT.json``.

One asyncio loop holds N ``graphql-transport-ws`` subscribers (``bench.subscriber``), each
on its own connection and watching one of a few rooms, and drives changes through the
simulator's admin API. In order:

1. every room gets an *anchor* member (so no room is ever empty), then two subscribers come
   and go (the gateway's first subscription: imports and first-time costs, not counted);
2. the gateway's resident memory (``VmRSS`` of its process) is read, the N subscribers
   connect and each waits for its ``INITIAL`` update; ``VmRSS`` again: the growth over N is
   the memory per subscriber (the allocator's keep included, so an upper bound);
3. the changes, in two phases, each with the simulator's counters zeroed first (its PBX
   calls are the phase's alone): *paced*, M changes at a steady rate (the latencies at a
   load the gateway keeps up with), then *burst*, changes sent back to back, each as soon
   as the previous admin call returned (the capacity: changes and updates delivered per
   second, gateway CPU per update). Rooms are taken in turn: a member joins, and when two
   have joined since, the older one leaves. Each change leaves its room with a member set
   it never had before, so every ``CHANGED`` update says which change it carries; a
   subscriber that missed one (or got two changes folded into one update) is counted,
   never guessed;
4. each phase waits for every delivery (or until no update has come for a while), then
   reads the simulator's counters and the CPU of the gateway, the simulator and this
   process; the result is written.

**Where a latency starts.** The admin call makes the change and, on the simulator's loop,
writes the ``ConferenceStatus`` event to the report connections before it answers, then
stamps its answer with ``changed_at`` (``time.monotonic()``: Linux's ``CLOCK_MONOTONIC``,
one clock for every process of the machine). Each latency starts there: the moment the PBX
had sent its event (``latency_from: simulator``). A simulator without the stamp, or a stamp
outside the call's own send and answer, falls back to the moment the admin request was sent
(``admin call sent``: an upper bound including the request's trip; its round trip is
reported beside it). A latency ends when the subscriber's message is read in this process,
so it includes this process's own scheduling (its CPU is reported too).

The spec (JSON): ``url`` (ws://.../graphql), ``gateway_url`` (http://..., for its
``/metrics``: which live source runs, events received, polls), ``admin_url`` (the
simulator), ``rooms``
(numbers), ``subscribers``, ``events``, ``rate`` (changes per second), ``addresses``
(source addresses to spread the sockets over), ``gateway_pid``, ``simulator_pid``,
``drain_timeout`` (seconds without any delivery after which the rest count as missed),
``burst_events`` (changes sent back to back after the paced ones), ``connect_concurrency``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.loadgen import percentiles
from bench.processes import machine_busy_seconds, precise_cpu_seconds, rss_bytes
from bench.subscriber import Subscriber

ANCHOR_BASE = 7000
"""Anchor members are extensions 7000 + room index."""
MEMBER_BASE = 80000
"""Members the changes bring in are extensions 80000 upwards, each used once."""
QUERY_IN_SESSION = "conference/query_in_session"


@dataclass
class Change:
    """One change made through the admin API, and who has seen it."""

    index: int
    room: str
    action: str
    member: str
    sent: float = 0.0
    answered: float = 0.0
    changed: float | None = None
    """The simulator's ``changed_at``: its event handed to the report connections."""
    seen: int = 0
    first: float | None = None
    last: float | None = None


@dataclass
class Tracker:
    """Matches every update a subscriber reads to the change that produced it."""

    audience: dict[str, int]
    """Subscribers per room: how many must see each of its changes."""
    changes: list[Change] = field(default_factory=list)
    by_state: dict[tuple[str, frozenset[str]], int] = field(default_factory=dict)
    initial: int = 0
    resynced: int = 0
    unmatched: int = 0
    """CHANGED updates carrying a state no change produced (or a change seen twice)."""
    seen_by: dict[int, dict[str, int]] = field(default_factory=dict)
    """Per subscriber and room, the index of the last change it saw (order is checked)."""
    delivered: int = 0
    """Updates matched to a change so far (the drain watches it move)."""
    all_initial: asyncio.Event = field(default_factory=asyncio.Event)
    initial_expected: int = 0
    pending: int = 0
    all_seen: asyncio.Event = field(default_factory=asyncio.Event)

    def expect(self, change: Change, members: frozenset[str]) -> None:
        """``change`` will leave its room holding ``members``."""
        self.changes.append(change)
        self.by_state[(change.room, members)] = change.index
        self.pending += 1
        self.all_seen.clear()

    def update(self, subscriber: Subscriber, data: dict[str, Any], now: float) -> None:
        """One ``conferenceSessions`` message read at ``now``."""
        reason = data.get("reason")
        if reason == "INITIAL":
            self.initial += 1
            if self.initial >= self.initial_expected:
                self.all_initial.set()
            return
        if reason == "RESYNCED":
            self.resynced += 1
        session = data.get("session") or {}
        members = frozenset(p.get("number") or "" for p in session.get("participants") or ())
        index = self.by_state.get((str(data.get("number")), members))
        if index is None:
            self.unmatched += 1
            return
        last = self.seen_by.setdefault(subscriber.index, {})
        previous = last.get(subscriber.room, -1)
        if index <= previous:
            self.unmatched += 1  # the same state twice, or an older one after a newer
            return
        last[subscriber.room] = index
        self.delivered += 1
        change = self.changes[index]
        change.seen += 1
        if change.first is None:
            change.first = now
        change.last = now
        if change.seen == self.audience[change.room]:
            self.pending -= 1
            if self.pending == 0:
                self.all_seen.set()


@dataclass
class Machine:
    """CPU seconds of the processes involved, and of the whole machine."""

    gateway: float
    simulator: float
    own: float
    busy: float

    @classmethod
    def now(cls, gateway_pid: int, simulator_pid: int) -> Machine:
        """A sample."""
        # The scheduler's run time, not 10 ms ticks: a small burst may cost less than one.
        return cls(
            precise_cpu_seconds(gateway_pid),
            precise_cpu_seconds(simulator_pid),
            time.process_time(),
            machine_busy_seconds(),
        )


class RoomPlan:
    """Which member each change brings in or takes out, room by room."""

    def __init__(self, rooms: list[str]) -> None:
        self.rooms = rooms
        self.anchors = {room: str(ANCHOR_BASE + i) for i, room in enumerate(rooms)}
        self.joined: dict[str, list[str]] = {room: [] for room in rooms}
        self._next = MEMBER_BASE

    def next_change(self, index: int) -> tuple[str, str, str, frozenset[str]]:
        """Change ``index``: its room, ``join`` or ``leave``, the member, the room after."""
        room = self.rooms[index % len(self.rooms)]
        joined = self.joined[room]
        if len(joined) >= 2:
            action, member = "leave", joined.pop(0)
        else:
            action, member = "join", str(self._next)
            self._next += 1
            joined.append(member)
        return room, action, member, frozenset({self.anchors[room], *joined})


async def _admin(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(f"/__simulator{path}", json=body)
    if response.status_code != 200:
        raise RuntimeError(f"simulator {path} answered {response.status_code}: {response.text}")
    answer: dict[str, Any] = response.json()
    return answer


async def _open_all(subscribers: list[Subscriber], concurrency: int) -> tuple[int, dict[str, int]]:
    """Open every subscriber, ``concurrency`` at a time; how many failed, and why."""
    gate = asyncio.Semaphore(concurrency)
    failures: dict[str, int] = {}

    async def one(subscriber: Subscriber) -> None:
        async with gate:
            try:
                await subscriber.open()
            except Exception as exc:  # counted and reported, never hidden
                why = f"{type(exc).__name__}: {str(exc)[:120]}"
                failures[why] = failures.get(why, 0) + 1

    await asyncio.gather(*(one(s) for s in subscribers))
    return sum(failures.values()), failures


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """The whole load; the result document."""
    rooms: list[str] = list(spec["rooms"])
    count: int = spec["subscribers"]
    gateway_pid, simulator_pid = spec["gateway_pid"], spec["simulator_pid"]
    addresses: list[str] = spec.get("addresses") or ["127.0.0.1"]
    plan = RoomPlan(rooms)
    audience = {room: 0 for room in rooms}
    for index in range(count):
        audience[rooms[index % len(rooms)]] += 1
    tracker = Tracker(audience)
    out: dict[str, Any] = {"subscribers": count, "rooms": len(rooms), "addresses": len(addresses)}

    async with (
        httpx.AsyncClient(base_url=spec["admin_url"], timeout=30.0) as admin,
        httpx.AsyncClient(base_url=spec["gateway_url"], timeout=30.0) as gateway,
    ):
        await _admin(admin, "/live/clear", {})
        for room, anchor in plan.anchors.items():
            await _admin(admin, "/live/join", {"number": room, "member": anchor})

        # First-time costs (imports, the first schema work) are not the subscribers'.
        warm = [Subscriber(-1 - i, spec["url"], rooms[0], tracker.update) for i in range(2)]
        tracker.initial_expected = len(warm)
        await _open_all(warm, 2)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await tracker.all_initial.wait()
        for subscriber in warm:
            await subscriber.close()
        await asyncio.sleep(0.5)
        tracker.initial, tracker.all_initial = 0, asyncio.Event()
        rss_before = rss_bytes(gateway_pid)

        subscribers = [
            Subscriber(
                index,
                spec["url"],
                rooms[index % len(rooms)],
                tracker.update,
                source_address=addresses[index % len(addresses)],
            )
            for index in range(count)
        ]
        tracker.initial_expected = count
        started = time.monotonic()
        failed, why = await _open_all(subscribers, spec.get("connect_concurrency", 50))
        try:
            async with asyncio.timeout(max(30.0, count / 20)):
                await tracker.all_initial.wait()
        except TimeoutError:
            pass
        out["subscribe_s"] = round(time.monotonic() - started, 3)
        out["connect_failures"] = failed
        out["connect_failure_reasons"] = why
        out["initial_updates"] = tracker.initial
        await asyncio.sleep(0.5)  # let the gateway finish what the subscribing started
        rss_after = rss_bytes(gateway_pid)
        out["gateway_live_subscribed"] = await gateway_live(gateway)  # its own count of them
        out["rss"] = {
            "before_bytes": rss_before,
            "subscribed_bytes": rss_after,
            "per_subscriber_bytes": round((rss_after - rss_before) / count) if count else None,
        }

        # The paced phase (latencies at a rate the gateway keeps up with), then the burst
        # (each change sent as soon as the previous admin call returns: the capacity).
        drain = float(spec.get("drain_timeout", 15.0))
        pids = (gateway_pid, simulator_pid)
        paced = (int(spec["events"]), float(spec["rate"]))
        phases = [await _phase(admin, gateway, tracker, plan, pids, *paced, idle=drain)]
        burst_count = int(spec.get("burst_events", 0))
        if burst_count:
            burst = await _phase(admin, gateway, tracker, plan, pids, burst_count, None, idle=drain)
            phases.append(burst)
        await _drain(tracker, drain)  # anything still due (when a phase gave up waiting)
        out["rss"]["after_changes_bytes"] = rss_bytes(gateway_pid)

    # Every phase's figures from the final state: an update that came late (after its
    # phase gave up waiting) counts with its real time, and "missed" means never received.
    out.update(phases[0].figures(tracker))
    if len(phases) > 1:
        out["burst"] = phases[1].figures(tracker)
    still_open = sum(1 for s in subscribers if s.open_now)
    close_started = time.monotonic()
    await asyncio.gather(*(s.close() for s in subscribers))
    out["close_s"] = round(time.monotonic() - close_started, 3)
    out["subscribers_open_at_end"] = still_open
    out["endings"] = _endings(subscribers)
    out["unmatched_updates"] = tracker.unmatched
    out["resynced_updates"] = tracker.resynced
    return out


@dataclass
class Phase:
    """What one phase did: its changes, the PBX's counters and the CPU until its end."""

    first: int
    count: int
    rate: float | None
    started: float
    before: Machine
    live_before: dict[str, Any]
    done: float = 0.0
    after: Machine | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    live_after: dict[str, Any] = field(default_factory=dict)

    def figures(self, tracker: Tracker) -> dict[str, Any]:
        """The phase's figures from what ``tracker`` holds now."""
        changes = tracker.changes[self.first : self.first + self.count]
        figures = _figures(tracker, changes, self.stats, self.started, self.done)
        figures["rate_asked"] = self.rate
        figures["gateway_live"] = _live_delta(self.live_before, self.live_after)
        assert self.after is not None
        figures["cpu"] = _cpu(
            self.before, self.after, self.done - self.started, figures["deliveries"]
        )
        return figures


async def _phase(
    admin: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    tracker: Tracker,
    plan: RoomPlan,
    pids: tuple[int, int],
    count: int,
    rate: float | None,
    *,
    idle: float,
) -> Phase:
    """``count`` changes at ``rate`` per second (None: back to back), every delivery waited
    for (see :func:`_drain`). The simulator's counters are zeroed first and read at the
    end, so its PBX calls are the phase's alone; so is the CPU."""
    await _admin(admin, "/reset", {})
    live = await gateway_live(gateway)
    phase = Phase(len(tracker.changes), count, rate, time.monotonic(), Machine.now(*pids), live)
    for offset in range(count):
        if rate is not None:
            delay = phase.started + offset / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        room, action, member, after = plan.next_change(phase.first + offset)
        change = Change(phase.first + offset, room, action, member)
        tracker.expect(change, after)
        change.sent = time.monotonic()
        answer = await _admin(admin, f"/live/{action}", {"number": room, "member": member})
        change.answered = time.monotonic()
        stamp = answer.get("changed_at")
        if isinstance(stamp, float) and change.sent <= stamp <= change.answered:
            change.changed = stamp  # one clock for both processes: it fell inside the call
    await _drain(tracker, idle)
    phase.done = time.monotonic()
    phase.after = Machine.now(*pids)
    phase.stats = (await admin.get("/__simulator/stats")).json()
    phase.live_after = await gateway_live(gateway)
    return phase


LIVE_METRICS = {
    "gateway_live_events_total": "events_received",
    "gateway_live_polls_total": "polls",
    "gateway_live_channel_reconnects_total": "reconnects",
    "gateway_live_subscribers": "subscribers",
    "gateway_live_slow_consumers_total": "slow_consumers",
}
"""The gateway's own live counters (``/metrics``), by the name this module reports."""


async def gateway_live(http: httpx.AsyncClient) -> dict[str, Any]:
    """The gateway's live counters and which source runs, from its ``/metrics``."""
    text = (await http.get("/metrics")).text
    found: dict[str, Any] = {"source": None}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith('gateway_live_source{kind="') and float(value) == 1.0:
            found["source"] = name.split('"')[1]
        elif name in LIVE_METRICS:
            found[LIVE_METRICS[name]] = float(value)
    return found


def _live_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the gateway's live counters did between two looks (the source at the end)."""
    delta: dict[str, Any] = {"source": after.get("source")}
    for key in ("events_received", "polls", "reconnects", "slow_consumers"):
        if key in after and key in before:
            delta[key] = round(after[key] - before[key])
    return delta


def _origin(change: Change) -> float:
    return change.changed if change.changed is not None else change.sent


async def _drain(tracker: Tracker, idle: float) -> None:
    """Until every change has reached all its subscribers, or ``idle`` seconds pass with
    no delivery at all (a slow gateway still delivering is waited for; a lost update is
    not waited for in vain)."""
    count, progress = tracker.delivered, time.monotonic()
    while not tracker.all_seen.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.25):
                await tracker.all_seen.wait()
        now = time.monotonic()
        if tracker.delivered != count:
            count, progress = tracker.delivered, now
        elif now - progress > idle:
            return


def _figures(
    tracker: Tracker,
    changes: list[Change],
    stats: dict[str, Any],
    phase_start: float,
    done: float,
) -> dict[str, Any]:
    """Latencies, rates, misses and PBX calls of one phase's ``changes``."""
    total = len(changes)
    complete = [c for c in changes if c.last is not None and c.seen == tracker.audience[c.room]]
    to_last = [round((c.last - _origin(c)) * 1e6) for c in complete if c.last is not None]
    to_first = [round((c.first - _origin(c)) * 1e6) for c in changes if c.first is not None]
    admin_rtt = [round((c.answered - c.sent) * 1e6) for c in changes]
    stamped = sum(1 for c in changes if c.changed is not None)
    # Rates count intervals: M changes paced at r per second span (M - 1) / r seconds.
    ended = max((c.last for c in complete if c.last is not None), default=done)
    window = ended - phase_start
    sent_span = (changes[-1].sent - changes[0].sent) if total > 1 else 0.0
    expected = sum(tracker.audience[c.room] for c in changes)
    delivered = sum(c.seen for c in changes)
    calls: dict[str, int] = dict(stats.get("calls", {}))
    in_session = calls.get(QUERY_IN_SESSION, 0)
    live = stats.get("live", {})
    return {
        "events": total,
        "events_complete": len(complete),
        "offered_rate": round((total - 1) / sent_span, 2) if sent_span > 0 else None,
        "events_per_s": round((len(complete) - 1) / window, 2) if window > 0 and complete else None,
        "deliveries_expected": expected,
        "deliveries": delivered,
        "deliveries_missed": expected - delivered,
        "deliveries_per_s": round(delivered / window, 1) if window > 0 else None,
        # Where latencies start: the simulator's stamp when every change had one, else
        # (a simulator without it, another clock) the admin call's send, an upper bound.
        "latency_from": "simulator" if stamped == total else "admin call sent",
        "latency_to_last_ms": percentiles(to_last),
        "latency_to_first_ms": percentiles(to_first),
        "admin_call_ms": percentiles(admin_rtt),
        "pbx": {
            "calls": calls,
            "calls_total": sum(calls.values()),
            "query_in_session_calls": in_session,
            "query_in_session_per_event": round(in_session / total, 3) if total else None,
            # A poller asks every interval while anybody watches, changes or not.
            "query_in_session_per_s": round(in_session / (done - phase_start), 3)
            if done > phase_start
            else None,
            "logins": stats.get("logins_succeeded", 0),
            "events_generated": live.get("events_generated", 0),
            "tcp_events_sent": live.get("tcp_events_sent", 0),
            "events_suppressed": live.get("events_suppressed", 0),
        },
    }


def _endings(subscribers: list[Subscriber]) -> dict[str, Any]:
    """Close codes and error codes the server sent (before our own close)."""
    errors: dict[str, int] = {}
    for subscriber in subscribers:
        for code in subscriber.ending.error_codes:
            errors[code] = errors.get(code, 0) + 1
    slow = sum(
        1
        for s in subscribers
        if "SLOW_CONSUMER" in s.ending.close_reason or "SLOW_CONSUMER" in s.ending.error_codes
    )
    return {"slow_consumer_closes": slow, "error_codes": errors}


def _cpu(before: Machine, after: Machine, seconds: float, deliveries: int) -> dict[str, Any]:
    gateway = after.gateway - before.gateway
    simulator = after.simulator - before.simulator
    own = after.own - before.own
    busy = after.busy - before.busy
    return {
        "window_s": round(seconds, 3),
        "gateway_s": round(gateway, 3),
        "gateway_percent": round(100 * gateway / seconds, 1) if seconds else None,
        # Moves less with other work on the machine than rates and latencies do.
        "gateway_us_per_delivery": round(1e6 * gateway / deliveries, 1) if deliveries else None,
        "simulator_s": round(simulator, 3),
        "load_s": round(own, 3),
        "load_percent": round(100 * own / seconds, 1) if seconds else None,
        # Cores the machine spent on anything but these three processes: noise.
        "other_cores": round(max(0.0, busy - gateway - simulator - own) / seconds, 2)
        if seconds
        else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the spec in ``argv[0]``; write the result to ``argv[1]``."""
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    try:
        import uvloop  # the gateway's loop too: the client should not be the slower side
    except ImportError:
        result = asyncio.run(run(spec))
    else:
        result = uvloop.run(run(spec))
    Path(args[1]).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
