"""The fan-out workload: N live subscribers on one gateway process, changes pushed to all.

Issue 17 asks what it costs to keep N ``conferenceSessions`` subscribers current: changes
per second, the delay from the PBX's event to the last subscriber (p50, p99), memory per
subscriber, and PBX calls per change (none when the PBX sends events). Each row starts its
own simulator (serial, the bench's 20 ms per call, its TCP report port on, events on or
off) and its own gateway (one process, the shipped settings, served as ``pbx-gateway
serve`` serves it: ``bench.serve gateway --as-shipped``), then runs ``bench.fanout_load``
in a third process, which subscribes, makes the changes through the simulator's admin API
(paced, then back to back) and measures (its docstring says exactly where a latency starts
and ends). Rows:

- **events**: the PBX sends ``ConferenceStatus`` on its report channel; the gateway holds
  the channel and pushes each change; at each size of ``sizes`` (100 and 1,000), paced
  (the latencies) then in a burst (the capacity: changes and updates per second, gateway
  CPU per update);
- **poll**: a PBX without events: the gateway's poller asks ``query_in_session`` for the
  watched rooms every interval, so a change waits for the next poll. Its changes are spread
  so a room changes at most once per two intervals (a poll sees every state).

Subscribers are spread over a few rooms (each watches one) and over loopback source
addresses (127.0.0.2 upwards, at most ``PER_ADDRESS`` sockets each), so N subscribers are N
clients on several hosts, as in production, and per-address and per-identity limits keep
their defaults. A setting the workload must change is named in the row's ``settings``.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.processes import ROOT, python_module
from bench.targets import Simulator, Target, TargetFactory
from bench.workloads import room
from gateway.settings import HttpLimits, Settings

PER_ADDRESS = 200
"""Sockets per loopback source address (an anonymous caller's identity is its address)."""
CONNECTION_MARGIN = 64
"""Connections beyond the subscribers' that the gateway must still accept (the harness's
readiness probes, the warm-up subscribers)."""
FIRST_ADDRESS = 2
"""127.0.0.2 upwards: 127.0.0.1 stays the harness's own."""


@dataclass(frozen=True)
class FanoutPlan:
    """One fan-out row."""

    mode: str
    """``events`` (the PBX pushes changes) or ``poll`` (the gateway asks)."""
    subscribers: int
    rooms: int
    events: int
    rate: float
    """Changes per second, offered at a steady pace."""
    poll_interval: float | None = None
    burst: int = 0
    """Changes sent back to back after the paced ones (the capacity); 0: none."""

    @property
    def label(self) -> str:
        """``fanout/1000`` or ``fanout-poll/100``."""
        kind = "fanout" if self.mode == "events" else "fanout-poll"
        return f"{kind}/{self.subscribers}"

    @property
    def seconds(self) -> float:
        """About how long the row takes (for the time budget): start, subscribe, changes."""
        paced = self.events / self.rate + (self.poll_interval or 0)
        burst = self.burst * (self.subscribers / self.rooms) / 2_000  # ~2,000 updates/s
        return 6.0 + self.subscribers / 150 + paced + burst


def plans(
    sizes: tuple[int, ...],
    *,
    events: int,
    rate: float,
    burst: int = 0,
    modes: tuple[str, ...] = ("events", "poll"),
    poll_size: int | None = None,
    poll_interval: float = 2.0,
    poll_events: int = 6,
) -> list[FanoutPlan]:
    """The rows: events at each size, then one poll row (at the smallest size)."""
    out: list[FanoutPlan] = []
    if "events" in modes:
        out.extend(FanoutPlan("events", n, _rooms(n), events, rate, burst=burst) for n in sizes)
    if "poll" in modes and sizes:
        n = poll_size or min(sizes)
        rooms = _rooms(n)
        # At most one change per room per two intervals: every state lives through a poll.
        poll_rate = rooms / (2 * poll_interval)
        out.append(FanoutPlan("poll", n, rooms, poll_events, poll_rate, poll_interval))
    return out


def _rooms(subscribers: int) -> int:
    return max(1, min(5, subscribers))


def addresses(subscribers: int) -> list[str]:
    """Loopback source addresses enough for ``subscribers`` sockets at ``PER_ADDRESS``."""
    count = max(1, math.ceil(subscribers / PER_ADDRESS))
    if FIRST_ADDRESS + count > 255:
        raise ValueError(f"{subscribers} subscribers need more than 127.0.0.2-254")
    return [f"127.0.0.{FIRST_ADDRESS + i}" for i in range(count)]


def gateway_settings(plan: FanoutPlan) -> tuple[dict[str, Any], str]:
    """The gateway's ``Settings`` overrides for ``plan``, and what they change in words.

    Every bench gateway is told the simulator's TCP report port (``PBX_REPORT_PORT``, set
    by the factory: where the PBX is, as an operator configures it, not a tuning). Events:
    the shipped source (``auto``: the report channel). Poll: a PBX with events off; the
    poller is chosen outright (``auto`` would find the silence only at its first
    reconciliation, 30 s in). One socket per subscriber: past ``GATEWAY_MAX_CONNECTIONS``
    (512) the cap is raised to fit them, and the row says so.
    """
    settings: dict[str, Any] = {}
    changed: list[str] = []
    if plan.mode == "poll":
        assert plan.poll_interval is not None
        settings.update(live_source="poll", live_poll_interval=plan.poll_interval)
        default = " (the default)" if plan.poll_interval == Settings.live_poll_interval else ""
        changed.append(
            "GATEWAY_LIVE_SOURCE=poll (the PBX sends no events), GATEWAY_LIVE_POLL_INTERVAL="
            f"{plan.poll_interval:g} s{default}"
        )
    needed = plan.subscribers + CONNECTION_MARGIN
    if needed > HttpLimits.max_connections:
        settings["http_limits"] = {"max_connections": needed}
        changed.append(
            f"GATEWAY_MAX_CONNECTIONS={needed} (default {HttpLimits.max_connections}; one "
            "socket per subscriber)"
        )
    return settings, "; ".join(changed)


def run(
    factory: TargetFactory, plan: FanoutPlan, workdir: Path, *, timeout: float = 300.0
) -> dict[str, Any]:
    """One row: a fresh simulator and gateway, the load process, the figures."""
    with factory.simulator(plan.rooms, events=plan.mode == "events") as simulator:
        settings, label = gateway_settings(plan)
        with factory.target("gateway", simulator, settings=settings, as_shipped=True) as gateway:
            result = _load(plan, simulator, gateway, workdir, timeout=timeout)
            info = gateway.info()
            stack = f"pbx-gateway serve ({gateway.info().get('loop_class', '?')})"
    ignored = info.get("ignored_settings", [])
    return {
        "workload": "fanout",
        "label": plan.label,
        "mode": plan.mode,
        "stack": stack,
        "settings": label,
        "ignored_settings": ignored,
        "poll_interval_s": plan.poll_interval,
        **result,
    }


def _load(
    plan: FanoutPlan, simulator: Simulator, gateway: Target, workdir: Path, *, timeout: float
) -> dict[str, Any]:
    port = gateway.process.port
    spec = {
        "url": f"ws://127.0.0.1:{port}/graphql",
        "gateway_url": f"http://127.0.0.1:{port}",
        "admin_url": simulator.url,
        "rooms": [room(index) for index in range(plan.rooms)],
        "subscribers": plan.subscribers,
        "events": plan.events,
        "rate": plan.rate,
        "burst_events": plan.burst,
        "addresses": addresses(plan.subscribers),
        "gateway_pid": gateway.process.pid,
        "simulator_pid": simulator.process.pid,
        "drain_timeout": 15.0 + 2 * (plan.poll_interval or 0),
        "connect_concurrency": 50,
    }
    stamp = f"{plan.label.replace('/', '-')}-{time.monotonic_ns()}"
    spec_path, out_path = workdir / f"{stamp}.spec.json", workdir / f"{stamp}.out.json"
    log_path = workdir / f"{stamp}.log"
    spec_path.write_text(json.dumps(spec))
    with log_path.open("wb") as log:
        done = subprocess.run(  # noqa: S603 (this interpreter, our own module)
            python_module("bench.fanout_load", str(spec_path), str(out_path)),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0 or not out_path.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"the fan-out load failed ({done.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(out_path.read_text())
    return result
