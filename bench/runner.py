"""The plan and its runs: each workload against each target, measured the same way.

For one workload: a fresh simulated PBX; the gateway first (warmed, its responses
captured), then the limit app replaying those bytes, then the naive app; before each
measured window the simulator settles (nothing in flight) and zeroes its counters, so
PBX calls are those of the window alone. Every target is a fresh process, so its peak
RSS (``VmHWM``) is that of one workload.

The multi-worker runs: ``workers`` is w4's mix on ``uvicorn --workers N`` with nothing
shared (each worker logs in and caches on its own); ``fleet`` is the same mix and worker
counts with one ``redis-server`` behind them (one PBX session, one cache, one PBX cap),
flushed before each count so every run starts as a new fleet.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import os
import platform
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import fanout, peers, report, workloads
from bench.burst import burst
from bench.loadgen import Load, LoadGenerator, PythonClient, Wrk
from bench.peers import PEERS
from bench.processes import ROOT, RedisServer, machine_busy_seconds, raise_priority
from bench.targets import SHIPPED_LABEL, Simulator, Stack, Target, TargetFactory
from bench.workloads import LIFTED_FETCH_BUDGET, Workload

TARGETS = ("gateway", "gw-nolog", "gw-noplan", "limit", "naive", "apollo", "yoga")
WORKLOADS = ("w1", "w2", "w5", "cold", "w3", "w4", "workers", "fleet", "fanout")
HEAD_TO_HEAD = ("w1", "w2", "w5")
LOG_OFF = "gw-nolog"
"""The w1 gateway with the request log off: the log's cost, beside the shipped gateway."""
LOG_OFF_SETTINGS = {"log_level": "WARNING"}
NO_PLANS = "gw-noplan"
"""w5 only: the gateway with compiled plans off (strawberry executes every read)."""
NO_PLANS_SETTINGS = {"compiled_plans": False}
COLD_ROOMS = 100
LIFTED_LABEL = "PBX-fetch budget lifted"
"""The cold burst: this many concurrent requests, one different cold room each."""
"""Workloads whose targets all run at once and are measured in alternating rounds."""
RESULTS_VERSION = 1
QUIET_CORES = 0.25
"""Other work below this many busy cores counts as a quiet machine."""


@dataclass
class Options:
    """What to run; see ``python -m bench --help``."""

    duration: float = 4.0
    """Seconds of load per target and workload (split into ``rounds`` in head-to-heads)."""
    rounds: int = 2
    """Head-to-head rounds: each target measured once per round, the order reversed every
    other round (A B C, C B A, A B C), so a drift in the machine's load cancels out."""
    warmup: float = 1.0
    """Seconds of unmeasured load on each head-to-head target before the rounds (Node's
    JIT and every cache warm, for all targets alike)."""
    w5_pool: int = 1_000
    """w5's distinct documents (the gateway answers each once before timing)."""
    w4_duration: float = 6.0
    w4_ttl: float = 2.0
    sizes: tuple[int, ...] = (100, 1_000, 10_000)
    worker_counts: tuple[int, ...] = (1, 2, 4)
    fleet_counts: tuple[int, ...] | None = None
    """Worker counts of the fleet runs (with Redis); None: the same as ``worker_counts``."""
    workloads: tuple[str, ...] = WORKLOADS
    targets: tuple[str, ...] = TARGETS
    latency: float = 0.02
    jitter: float = 0.01
    budget: float = 400.0
    """Seconds; runs that would end past it are skipped (and say so)."""
    compare_stacks: bool = True
    """Also run w1 on the gateway with asyncio+h11 when uvloop/httptools are in use."""
    loadgen_check: bool = True
    """Re-measure the w1 limit with other clients, to show the client is not the limit."""
    naive_workloads: tuple[str, ...] = ("w1", "w2", "w3", "w4")
    """Where the naive app runs too (each of its windows costs a process start)."""
    peer_workloads: tuple[str, ...] = HEAD_TO_HEAD
    """Where Apollo and Yoga run (the head-to-head workloads)."""
    nice: int = 0
    """A negative value raises every process's CPU weight against other work (root)."""
    connections: int | None = None
    """Every workload's concurrency, instead of its own (64, 4 or 200)."""
    wait_quiet: float = 0.0
    """Seconds to wait, before each window, for other work on the machine to stop."""
    fanout_sizes: tuple[int, ...] = (100, 1_000)
    """Subscriber counts of the fan-out rows with events on."""
    fanout_events: int = 50
    """Paced changes per events-on fan-out row (its latencies)."""
    fanout_rate: float = 5.0
    """Changes per second offered in the paced phase of the events-on rows."""
    fanout_burst: int = 100
    """Changes sent back to back after the paced ones (the capacity); 0: none."""
    fanout_modes: tuple[str, ...] = ("events", "poll")
    fanout_poll_interval: float = 2.0
    """The poll row's interval (the gateway's poller), seconds."""
    fanout_poll_events: int = 6
    start_cost: float = 3.0
    """Seconds a target's start, warm-up and stop take, for the budget's sake."""
    stack: Stack = field(default_factory=Stack.best)


class Budget:
    """The run's time budget."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.started = seconds, time.monotonic()

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.monotonic() - self.started

    def allows(self, seconds: float) -> bool:
        """Whether something taking ``seconds`` still ends inside the budget."""
        return self.elapsed + seconds <= self.seconds


class Bench:
    """Runs the plan, printing each result as it comes, and returns the results document."""

    def __init__(
        self,
        options: Options,
        loadgen: LoadGenerator,
        workdir: Path,
        *,
        loadgen_version: str = "",
        printer: Callable[[str], None] = report.say,
    ) -> None:
        self.options, self.loadgen, self.workdir = options, loadgen, workdir
        self.say = printer
        self.budget = Budget(options.budget)
        self.factory = TargetFactory(
            workdir, options.stack, latency=options.latency, jitter=options.jitter,
            nice=options.nice,
        )  # fmt: skip
        if options.nice:
            raise_priority(os.getpid(), options.nice)  # the harness's session: the clients
        self.runs: list[dict[str, Any]] = []
        self.checks: list[dict[str, Any]] = []
        self.skipped: list[str] = []
        self.cold_runs: list[dict[str, Any]] = []
        self.fanout_runs: list[dict[str, Any]] = []
        self._simulators: dict[int, Simulator] = {}
        self._exit = contextlib.ExitStack()
        self.environment = environment(options, loadgen, loadgen_version)

    def run(self) -> dict[str, Any]:
        """Everything the options ask for; the results document."""
        started = datetime.now(UTC)
        self.say(report.header(self.environment, self.options))
        with self._exit:
            for workload in self.plan():
                if workload.key in HEAD_TO_HEAD:
                    self.head_to_head(workload, first=workload.key == "w1")
                else:
                    if "cold" in self.options.workloads and not self.cold_runs:
                        self.cold()  # after the head-to-heads, before the rest
                    self.workload(workload)
            if "cold" in self.options.workloads and not self.cold_runs:
                self.cold()
            if "workers" in self.options.workloads:
                self.workers()
            if "fleet" in self.options.workloads:
                self.fleet()
            if "fanout" in self.options.workloads:
                self.fanout()
        document = {
            "version": RESULTS_VERSION,
            "started_at": started.isoformat(timespec="seconds"),
            "elapsed_s": round(self.budget.elapsed, 1),
            "environment": self.environment,
            "options": options_json(self.options),
            "runs": self.runs,
            "ratios": ratios(self.runs),
            "fleet_vs_workers": fleet_vs_workers(self.runs),
            "w3_scaling": w3_scaling(self.runs),
            "cold_burst": self.cold_runs,
            "fanout": self.fanout_runs,
            "loadgen_check": self.checks,
            "skipped": self.skipped,
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        }
        self.say(report.summary(document))
        return document

    def plan(self) -> list[Workload]:
        """The workloads asked for, in order (with ``options.connections`` if set)."""
        chosen, d = self.options.workloads, self.options.duration
        plan: list[Workload] = []
        if "w1" in chosen:
            plan.append(workloads.w1(d))
        if "w2" in chosen:
            plan.append(workloads.w2(d))
        if "w5" in chosen:
            plan.append(workloads.w5(d, pool=self.options.w5_pool))
        if "w3" in chosen:
            plan.extend(workloads.w3(rooms, d) for rooms in self.options.sizes)
        if "w4" in chosen:
            plan.append(workloads.w4(self.options.w4_duration, ttl=self.options.w4_ttl))
        return [self._sized(workload) for workload in plan]

    def _sized(self, workload: Workload) -> Workload:
        if self.options.connections is None:
            return workload
        return dataclasses.replace(workload, connections=self.options.connections)

    # --- one workload -------------------------------------------------------------------

    def workload(self, workload: Workload, *, first: bool = False) -> None:
        """Gateway (and its second stack), limit, naive: one simulator, fresh targets."""
        targets = [t for t in ("gateway", "limit", "naive") if t in self.options.targets]
        if "limit" in targets and "gateway" not in targets:
            targets.remove("limit")  # it replays the gateway's bytes
        if workload.key not in self.options.naive_workloads and "naive" in targets:
            targets.remove("naive")
        self.say(report.workload_header(workload, self.loadgen.name))
        simulator = self.simulator(workload.rooms)
        replies: dict[bytes, bytes] = {}
        for kind in targets:
            if not self._fits(workload.duration, f"{workload.label} {kind}"):
                continue
            if kind == "gateway":
                replies = self._gateway(workload, simulator, self.options.stack)
                plain = Stack("asyncio", "h11")
                if (
                    first
                    and self.options.compare_stacks
                    and plain != self.options.stack
                    and self._fits(workload.duration, f"{workload.label} gateway {plain.label}")
                ):
                    self._gateway(workload, simulator, plain)
            elif kind == "limit" and replies:
                with self.factory.target("limit", simulator, replies=replies) as target:
                    self.measure(workload, target, simulator, reference=replies)
                    if first and self.options.loadgen_check:
                        self._loadgen_check(workload, target, simulator)
            elif kind == "naive":
                with self.factory.target("naive", simulator) as target:
                    self.measure(workload, target, simulator, reference=replies)

    def head_to_head(self, workload: Workload, *, first: bool = False) -> None:
        """Every target of ``workload`` running at once, answers checked against the
        gateway's, then measured in alternating rounds; one merged row per target."""
        kinds = self._head_to_head_targets(workload)
        if "gateway" not in kinds:
            self._skip(f"{workload.label}: the head-to-head needs the gateway (--targets)")
            return
        rounds = max(1, self.options.rounds)
        window = max(1.0, workload.duration / rounds)
        if isinstance(self.loadgen, Wrk):
            window = float(max(1, round(window)))  # wrk counts whole seconds
        timed = dataclasses.replace(workload, duration=window)
        self.say(report.workload_header(workload, self.loadgen.name, rounds=rounds))
        simulator = self.simulator(workload.rooms)
        with contextlib.ExitStack() as running:
            started, checked, replies = self._start_all(
                workload,
                simulator,
                kinds,
                running,
                log_off=first and LOG_OFF in self.options.targets,
            )
            self._warm(workload, started)
            measured: dict[str, list[dict[str, Any]]] = {kind: [] for kind in started}
            order = list(started)
            for index in range(rounds):
                for kind in order if index % 2 == 0 else order[::-1]:
                    if self._fits(window, f"{workload.label} {kind} round {index + 1}"):
                        run = self.measure(
                            timed, started[kind], simulator, captured=kind == "gateway",
                            record=False, show=False,
                        )  # fmt: skip
                        measured[kind].append(run)
            for kind, runs in measured.items():
                if runs:
                    self._record_merged(workload, kind, merge_rounds(runs), checked.get(kind))
            if first and "limit" in started and self.options.loadgen_check:
                self._loadgen_check(timed, started["limit"], simulator)
        if "naive" in kinds and self._fits(workload.duration, f"{workload.label} naive"):
            # Once, last, and stopped right after: its rate is the PBX's, so drift does not
            # matter, but the PBX calls its requests leave queued (20 per w2 request) would
            # run on into every later window.
            with self.factory.target("naive", simulator) as naive:
                self.measure(workload, naive, simulator, reference=replies)
        plain = Stack("asyncio", "h11")
        if (
            first
            and self.options.compare_stacks
            and plain != self.options.stack
            and self._fits(workload.duration, f"{workload.label} gateway {plain.label}")
        ):
            self._gateway(workload, simulator, plain)

    def _start_all(
        self,
        workload: Workload,
        simulator: Simulator,
        kinds: list[str],
        running: contextlib.ExitStack,
        *,
        log_off: bool,
    ) -> tuple[dict[str, Target], dict[str, str], dict[bytes, bytes]]:
        """The head-to-head's targets (all but naive), started in ``running``: the gateway
        first (its answers captured: the reference), each peer only if it answers alike.
        Returns them by name, how each checked answer matched, and the gateway's replies."""
        gateway = running.enter_context(
            self.factory.target("gateway", simulator, settings=workload.gateway_settings)
        )
        if workload.key == "w5":  # every room in the store: one PBX call
            gateway.post(workloads.all_rooms("number"))
        replies = gateway.capture(workload.bodies)
        started: dict[str, Target] = {"gateway": gateway}
        checked: dict[str, str] = {}
        if log_off:
            quiet = running.enter_context(
                self.factory.target(
                    "gateway", simulator, settings={**workload.gateway_settings, **LOG_OFF_SETTINGS}
                )
            )
            first = workload.bodies[0]
            started[LOG_OFF] = quiet
            checked[LOG_OFF] = "bytes" if quiet.post(first) == replies[first.encode()] else ""
        if workload.key == "w5" and NO_PLANS in self.options.targets:
            interpreted = running.enter_context(
                self.factory.target(
                    "gateway",
                    simulator,
                    settings={**workload.gateway_settings, **NO_PLANS_SETTINGS},
                )
            )
            interpreted.post(workloads.all_rooms("number"))
            sample = workload.bodies[:5]
            same = all(interpreted.post(body) == replies[body.encode()] for body in sample)
            started[NO_PLANS], checked[NO_PLANS] = interpreted, "bytes" if same else ""
        for kind in kinds[1:]:
            if kind == "limit":
                started[kind] = running.enter_context(
                    self.factory.target("limit", simulator, replies=replies)
                )
            elif kind in PEERS:
                peer = running.enter_context(
                    self.factory.peer(kind, simulator, label=self._node_label())
                )
                how = self._check_answers(workload, peer, replies)
                if how is not None:
                    started[kind], checked[kind] = peer, how
        return started, checked, replies

    def _warm(self, workload: Workload, started: Mapping[str, Target]) -> None:
        """``options.warmup`` seconds of unmeasured load on each target."""
        seconds = self.options.warmup
        if seconds <= 0 or not self._fits(seconds * len(started), f"{workload.label} warm-up"):
            return
        for target in started.values():
            load = Load(target.process.base_url, workload.bodies, workload.connections, seconds,
                        random=workload.random)  # fmt: skip
            self.loadgen.run(load, self.workdir)

    def _record_merged(
        self, workload: Workload, kind: str, merged: dict[str, Any], check: str | None
    ) -> None:
        """Keep and print one target's merged rounds, with how its answers matched."""
        merged["target"] = kind
        if kind == LOG_OFF:
            merged["settings"] = "request log off"
        elif kind == NO_PLANS:
            merged["settings"] = "compiled plans off (GATEWAY_COMPILED_PLANS=false)"
        else:
            merged["settings"] = workload.settings_label if kind == "gateway" else ""
        if check is not None:
            merged["same_bytes_as_gateway"] = check == "bytes"
            if kind in PEERS:
                merged["body_check"] = check
        elif kind == "limit":
            merged["same_bytes_as_gateway"] = True  # it replays the gateway's bytes
        self.runs.append(merged)
        self.say(report.run_row(merged))

    def cold(self) -> None:
        """``COLD_ROOMS`` concurrent requests for as many different cold rooms, sent at once
        to each target freshly started (nothing cached): PBX calls, errors, latencies. The
        gateway twice: as shipped, and with the PBX-fetch budget lifted (the burst comes
        from one address, so one client: the budget, not batching, decides the first)."""
        bodies = [workloads.room_by_variable(index) for index in range(COLD_ROOMS)]
        # Not the naive app: it makes one PBX call per field by construction (100 here).
        kinds = [k for k in ("gateway", *PEERS) if k in self.options.targets]
        if any(k in PEERS for k in kinds) and peers.missing() is not None:
            self._skip(f"cold {', '.join(k for k in kinds if k in PEERS)}: {peers.missing()}")
            kinds = [k for k in kinds if k not in PEERS]
        plan: list[tuple[str, dict[str, Any], str]] = [(k, {}, "") for k in kinds]
        if "gateway" in kinds:
            plan[0] = ("gateway", {}, "shipped defaults")
            plan.insert(1, ("gateway", {"security": LIFTED_FETCH_BUDGET}, LIFTED_LABEL))
        self.say(report.cold_header(COLD_ROOMS))
        simulator = self.simulator(COLD_ROOMS)
        for kind, settings, label in plan:
            if not self._fits(self.options.start_cost + 5, f"cold {kind} {label}".strip()):
                continue
            simulator.settle()
            started = (
                self.factory.peer(kind, simulator, label=self._node_label())
                if kind in PEERS
                else self.factory.target(kind, simulator, settings=settings)
            )
            with started as target:
                simulator.settle()  # the start-up login is not the burst's
                result = burst(
                    target.process.base_url, bodies, warm=workloads.room_by_variable_unbound()
                )
                stats = simulator.stats()
            calls: dict[str, int] = stats["calls"]
            row = {
                "target": kind,
                "stack": target.stack_label,
                "settings": label,
                **result.as_json(),
                "pbx_calls": sum(calls.values()),
                "query_calls": calls.get("conference/query", 0),
                "pbx_max_in_flight": stats["max_in_flight"],
            }
            self.cold_runs.append(row)
            self.say(report.cold_row(row))

    def fanout(self) -> None:
        """Live subscribers: N on one gateway, changes pushed (events) or polled; one row
        each, its own simulator and gateway (see :mod:`bench.fanout`)."""
        o = self.options
        rows = fanout.plans(
            o.fanout_sizes, events=o.fanout_events, rate=o.fanout_rate, burst=o.fanout_burst,
            modes=o.fanout_modes,
            poll_interval=o.fanout_poll_interval, poll_events=o.fanout_poll_events,
        )  # fmt: skip
        self.say(report.fanout_header(self.options))
        for plan in rows:
            if not self._fits(plan.seconds, plan.label):
                continue
            self._wait_quiet()
            row = fanout.run(self.factory, plan, self.workdir)
            self.fanout_runs.append(row)
            self.say(report.fanout_row(row))

    def _head_to_head_targets(self, workload: Workload) -> list[str]:
        """The targets of a head-to-head, gateway first; peers only where installed."""
        kinds = [t for t in TARGETS if t in self.options.targets and t not in (LOG_OFF, NO_PLANS)]
        if workload.key not in self.options.naive_workloads and "naive" in kinds:
            kinds.remove("naive")
        wanted_peers = [k for k in PEERS if k in kinds]
        if wanted_peers and workload.key not in self.options.peer_workloads:
            kinds = [k for k in kinds if k not in PEERS]
        elif wanted_peers:
            reason = peers.missing()
            if reason is not None:
                self._skip(f"{workload.label} {', '.join(wanted_peers)}: {reason}")
                kinds = [k for k in kinds if k not in PEERS]
        return kinds

    def _node_label(self) -> str:
        version = self.environment.get("peers", {}).get("node") or "?"
        return f"node {version.lstrip('v')}"

    def _check_answers(
        self, workload: Workload, peer: Target, replies: Mapping[bytes, bytes]
    ) -> str | None:
        """Whether ``peer`` answers like the gateway (a sample of w5's pool, every other
        pool whole): ``"bytes"`` or ``"canonical JSON"``; None (and why) if it does not."""
        bodies = workload.bodies[:5] if workload.key == "w5" else workload.bodies
        found = set()
        for body in bodies:
            ours = replies[body.encode()]
            theirs = peer.post(body)
            how = peers.same_answer(theirs, ours)
            if how is None:
                self._skip(
                    f"{workload.label} {peer.kind}: its answer differs from the gateway's, so "
                    f"it is not timed: {theirs[:200]!r} vs {ours[:200]!r}"
                )
                return None
            found.add(how)
        return "canonical JSON" if "canonical JSON" in found else "bytes"

    def simulator(self, rooms: int) -> Simulator:
        """The simulated PBX with ``rooms`` rooms, started once per run and shared."""
        if rooms not in self._simulators:
            self._simulators[rooms] = self._exit.enter_context(self.factory.simulator(rooms))
        return self._simulators[rooms]

    def _fits(self, duration: float, what: str) -> bool:
        """Whether one more window (and a process start) fits the budget; else say so."""
        if self.budget.allows(duration + self.options.start_cost):
            return True
        self._skip(f"{what}: the time budget ({self.options.budget:.0f} s) is spent")
        return False

    def _gateway(
        self, workload: Workload, simulator: Simulator, stack: Stack
    ) -> dict[bytes, bytes]:
        with self.factory.target(
            "gateway", simulator, stack=stack, settings=workload.gateway_settings
        ) as target:
            state = self._fill_state(workload, target) if workload.key == "w3" else None
            replies = target.capture(workload.bodies)  # also warms the cache
            self.measure(workload, target, simulator, reference=replies, state=state, captured=True)
        return replies

    def _fill_state(self, workload: Workload, target: Target) -> dict[str, Any]:
        """RSS before and after one request fills the cache with every room."""
        for _ in range(3):  # first-request costs (validation, imports) before the baseline
            target.post(workloads.body("{ __typename }"))
        before = target.process.sample().rss
        target.post(workloads.all_rooms("number"))  # a small answer; the cache holds all
        after = target.process.sample().rss
        return {
            "rss_before_fill_bytes": before,
            "rss_after_fill_bytes": after,
            "bytes_per_room": round((after - before) / workload.rooms, 1),
        }

    def _loadgen_check(self, workload: Workload, target: Target, simulator: Simulator) -> None:
        """The same limit app under other clients: if one wrk thread were the bottleneck,
        two would be faster; the asyncio client's ceiling shows what it could measure."""
        generators: list[LoadGenerator] = [PythonClient(processes=1), PythonClient(processes=2)]
        if isinstance(self.loadgen, Wrk):
            generators.insert(0, Wrk(self.loadgen.executable, threads=2))
        for generator in generators:
            if not self._fits(workload.duration, f"load generator check with {generator.name}"):
                continue
            run = self.measure(workload, target, simulator, loadgen=generator, record=False)
            self.checks.append(run)

    # --- the multi-worker runs ----------------------------------------------------------

    def _multi_worker(self, key: str, what: str) -> Workload:
        """w4's mix (sized, with its short TTL) as the ``key`` workload."""
        workload = self._sized(workloads.w4(self.options.w4_duration, ttl=self.options.w4_ttl))
        return Workload(
            key, f"{what}, {workload.title}", workload.rooms, workload.connections,
            workload.bodies, max(self.options.duration, 3.0), workload.gateway_settings,
            workload.settings_label,
        )  # fmt: skip

    def workers(self) -> None:
        """w4's mix on ``uvicorn --workers N``: each worker has its own token and cache."""
        workload = self._multi_worker("workers", "gateway with uvicorn --workers N")
        self.say(report.workload_header(workload, self.loadgen.name))
        simulator = self.simulator(workload.rooms)
        for count in self.options.worker_counts:
            if not self._fits(workload.duration + count, f"workers={count}"):
                continue
            simulator.settle()
            with self.factory.target(
                "gateway", simulator, workers=count, settings=workload.gateway_settings
            ) as target:
                logins = simulator.stats()["logins_succeeded"]
                # Warmed as every other target is: unwarmed, each worker's first second
                # (211 documents validated, 50 rooms fetched, per worker) was most of the
                # window, and the rows measured start-up, not the workers' rate.
                self._warm(workload, {"gateway": target})
                self.measure(workload, target, simulator, workers=count, startup_logins=logins)

    def fleet(self) -> None:
        """The same on ``uvicorn --workers N`` sharing one Redis: one PBX session, one
        cache, one PBX cap. A fresh fleet per count: Redis flushed, a new token key."""
        workload = self._multi_worker("fleet", "gateway with uvicorn --workers N sharing Redis")
        self.say(report.workload_header(workload, self.loadgen.name))
        binary = shutil.which("redis-server")
        if binary is None:
            self._skip("fleet: redis-server is not installed (apt-get install redis-server)")
            return
        simulator = self.simulator(workload.rooms)
        redis = self._exit.enter_context(self.factory.redis(binary))
        counts = self.options.fleet_counts or self.options.worker_counts
        for count in counts:
            if not self._fits(workload.duration + count, f"fleet workers={count}"):
                continue
            redis.flush()
            simulator.settle()
            with self.factory.target(
                "gateway", simulator, workers=count, settings=workload.gateway_settings,
                redis=redis,
            ) as target:  # fmt: skip
                logins = simulator.stats()["logins_succeeded"]
                self._warm(workload, {"gateway": target})  # as the workers' runs are
                self.measure(
                    workload, target, simulator, workers=count, startup_logins=logins, redis=redis
                )

    # --- one measured window ------------------------------------------------------------

    def measure(
        self,
        workload: Workload,
        target: Target,
        simulator: Simulator,
        *,
        loadgen: LoadGenerator | None = None,
        reference: Mapping[bytes, bytes] | None = None,
        state: dict[str, Any] | None = None,
        captured: bool = False,
        workers: int = 1,
        startup_logins: int | None = None,
        redis: RedisServer | None = None,
        record: bool = True,
        show: bool = True,
    ) -> dict[str, Any]:
        """Settle the PBX, run the load, read the counters and the process; print a row."""
        loadgen = loadgen or self.loadgen
        same, one_request_calls = None, None
        if target.kind != "limit":  # what one request costs the PBX, alone (warm if warmed)
            simulator.settle()
            first = workload.bodies[0]
            reply = target.post(first)
            one_request_calls = sum(simulator.stats()["calls"].values())
            if reference and not captured:
                same = reply == reference.get(first.encode())
        elif reference:
            first = workload.bodies[0]
            same = target.post(first) == reference.get(first.encode())
        waited = self._wait_quiet()
        simulator.settle()
        before, sim_before, busy_before = (
            target.process.sample(),
            simulator.process.sample(),
            machine_busy_seconds(),
        )
        redis_before = (redis.sample(), redis.info()) if redis is not None else None
        log_before = _size(target.process.log_path)
        result = loadgen.run(
            Load(
                target.process.base_url,
                workload.bodies,
                workload.connections,
                workload.duration,
                random=workload.random,
            ),
            self.workdir,
        )
        stats = simulator.stats()
        after, sim_after = target.process.sample(), simulator.process.sample()
        logged = _request_lines(target.process.log_path, log_before)
        shared = _redis_window(redis, redis_before, result.requests)
        busy = machine_busy_seconds() - busy_before
        ours = (
            after.cpu_seconds - before.cpu_seconds
            + sim_after.cpu_seconds - sim_before.cpu_seconds
            + result.client_cpu_s
            + (shared["cpu_s"] if shared else 0.0)
        )  # fmt: skip
        calls: dict[str, int] = stats["calls"]
        total_calls = sum(calls.values())
        cpu = after.cpu_seconds - before.cpu_seconds
        info = target.info()
        first_reply = reference.get(workload.bodies[0].encode()) if reference else None
        run: dict[str, Any] = {
            "workload": workload.key,
            "label": workload.label,
            "title": workload.title,
            "rooms": workload.rooms,
            "target": target.kind,
            "stack": target.stack_label,
            "workers": workers,
            "connections": workload.connections,
            "bodies": len(workload.bodies),
            **result.as_json(),
            "pbx": {
                "calls": calls,
                "calls_total": total_calls,
                "query_calls": calls.get("conference/query", 0),
                "logins": stats["logins_succeeded"],
                "startup_logins": startup_logins,
                "max_in_flight": stats["max_in_flight"],
                "per_1000_requests": _per(total_calls, result.requests, 1000),
                "per_100_requests": _per(total_calls, result.requests, 100),
                "one_request_calls": one_request_calls,
            },
            "server": {
                "peak_rss_bytes": after.peak_rss,
                "rss_start_bytes": before.rss,
                "rss_end_bytes": after.rss,
                "processes": len(after.pids),
                "cpu_s": round(cpu, 3),
                "cpu_percent": round(100 * cpu / result.duration_s, 1) if result.duration_s else 0,
                "cpu_ms_per_request": round(1000 * cpu / result.requests, 3)
                if result.requests
                else None,
                "loop_class": info.get("loop_class"),
                "ignored_settings": info.get("ignored_settings", []),
            },
            "machine": {
                # CPU the machine spent on anything but this run's processes, in cores:
                # other jobs on a shared machine make every number above less reliable.
                "other_cores": round(max(0.0, busy - ours) / result.duration_s, 2)
                if result.duration_s
                else None,
                "simulator_cpu_s": round(sim_after.cpu_seconds - sim_before.cpu_seconds, 3),
                "waited_for_quiet_s": waited,
            },
            "redis": shared,
            "settings": workload.settings_label if target.kind == "gateway" else "",
            # The gateway's request log in the window (its stderr, a file): one line per
            # request shows the log was on and written, as in production.
            "request_log_lines": logged if target.kind == "gateway" else None,
            "response_bytes": len(first_reply) if first_reply is not None else None,
            "same_bytes_as_gateway": same,
            "state": state,
        }
        if record:
            self.runs.append(run)
        if show:
            self.say(report.run_row(run))
        return run

    def _wait_quiet(self) -> float | None:
        """Up to ``options.wait_quiet`` seconds for other work on the machine to calm down."""
        if self.options.wait_quiet <= 0:
            return None
        started = time.monotonic()
        limit = min(self.options.wait_quiet, max(0.0, self.options.budget - self.budget.elapsed))
        while time.monotonic() - started < limit:
            busy = machine_busy_seconds()
            time.sleep(0.5)
            if (machine_busy_seconds() - busy) / 0.5 < QUIET_CORES:
                break
        return round(time.monotonic() - started, 1)

    def _skip(self, why: str) -> None:
        self.skipped.append(why)
        self.say(f"  skipped: {why}")


def _per(calls: int, requests: int, per: int) -> float | None:
    return round(calls * per / requests, 3) if requests else None


def _redis_window(
    redis: RedisServer | None, before: tuple[Any, dict[str, str]] | None, requests: int
) -> dict[str, Any] | None:
    """What Redis did during a window: commands (per client request), its CPU, memory."""
    if redis is None or before is None:
        return None
    sample, info = redis.sample(), redis.info()
    commands = int(info["total_commands_processed"]) - int(before[1]["total_commands_processed"])
    return {
        "commands": commands,
        "commands_per_request": round(commands / requests, 2) if requests else None,
        "cpu_s": round(sample.cpu_seconds - before[0].cpu_seconds, 3),
        "used_memory_bytes": int(info["used_memory"]),
        "keys": sum(
            int(value.split(",")[0].removeprefix("keys="))
            for name, value in info.items()
            if re.fullmatch(r"db[0-9]+", name)
        ),
    }


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _request_lines(path: Path, start: int) -> int:
    """``gateway.request`` lines written to ``path`` past byte ``start``."""
    try:
        with path.open("rb") as log:
            log.seek(start)
            return log.read().count(b'"logger":"gateway.request"')
    except OSError:
        return 0


def merge_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One target's rounds as one run: counts and CPU summed, rates over the summed time,
    latencies and memory those of the median round (by requests/s), every round's rate."""
    ordered = sorted(runs, key=lambda run: run["rps"])
    merged = copy.deepcopy(ordered[len(ordered) // 2])
    requests = sum(run["requests"] for run in runs)
    duration = sum(run["duration_s"] for run in runs)
    merged["requests"], merged["duration_s"] = requests, round(duration, 3)
    merged["rps"] = round(requests / duration, 1) if duration else 0.0
    merged["rounds_rps"] = [run["rps"] for run in runs]
    if merged.get("request_log_lines") is not None:
        merged["request_log_lines"] = sum(run["request_log_lines"] or 0 for run in runs)
    merged["errors"] = {
        key: sum(run["errors"].get(key, 0) for run in runs) for key in runs[0]["errors"]
    }
    client_cpu = sum(run["client"]["cpu_s"] for run in runs)
    merged["client"]["cpu_s"] = round(client_cpu, 3)
    merged["client"]["cpu_percent"] = (
        round(100 * client_cpu / (duration * merged["client"]["workers"]), 1) if duration else 0
    )
    pbx = merged["pbx"]
    calls: dict[str, int] = {}
    for run in runs:
        for name, count in run["pbx"]["calls"].items():
            calls[name] = calls.get(name, 0) + count
    total = sum(calls.values())
    pbx.update(
        calls=calls,
        calls_total=total,
        query_calls=calls.get("conference/query", 0),
        logins=sum(run["pbx"]["logins"] for run in runs),
        max_in_flight=max(run["pbx"]["max_in_flight"] for run in runs),
        per_1000_requests=_per(total, requests, 1000),
        per_100_requests=_per(total, requests, 100),
    )
    server = merged["server"]
    cpu = sum(run["server"]["cpu_s"] for run in runs)
    server.update(
        cpu_s=round(cpu, 3),
        cpu_percent=round(100 * cpu / duration, 1) if duration else 0,
        cpu_ms_per_request=round(1000 * cpu / requests, 3) if requests else None,
        peak_rss_bytes=max(run["server"]["peak_rss_bytes"] for run in runs),
    )
    others = [run["machine"]["other_cores"] for run in runs]
    if None not in others:
        merged["machine"]["other_cores"] = round(
            sum(o * run["duration_s"] for o, run in zip(others, runs, strict=True)) / duration, 2
        )
    return merged


def ratios(runs: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per workload: every target's requests/s as a share of the limit app's (the HTTP
    ceiling), the gateway's over the naive app's and over each peer's, and server CPU per
    request against the limit's. The gateway on a second stack (w1) is left out."""
    by_label: dict[str, dict[str, dict[str, Any]]] = {}
    stacks = {run["stack"] for run in runs if run["target"] == "limit"}
    for run in runs:
        if run["workload"] in ("workers", "fleet"):
            continue
        if run["target"] == "gateway" and stacks and run["stack"] not in stacks:
            continue
        by_label.setdefault(run["label"], {})[run["target"]] = run
    out: dict[str, dict[str, float | None]] = {}
    for label, targets in by_label.items():
        gateway = targets.get("gateway")
        if gateway is None:
            continue
        row: dict[str, float | None] = {}
        limit = targets.get("limit")
        for kind in ("gateway", *PEERS, "naive"):
            if kind in targets:
                row[f"{kind}/limit"] = _ratio(targets[kind], limit)
        row["gateway/naive"] = _ratio(gateway, targets.get("naive"))
        if LOG_OFF in targets:  # the shipped gateway's rate over the same with no log
            row[f"gateway/{LOG_OFF}"] = _ratio(gateway, targets[LOG_OFF])
        if NO_PLANS in targets:  # the shipped gateway's rate over the same without plans
            row[f"gateway/{NO_PLANS}"] = _ratio(gateway, targets[NO_PLANS])
        for kind in PEERS:
            if kind in targets:
                row[f"gateway/{kind}"] = _ratio(gateway, targets[kind])
        if limit is not None and limit["server"]["cpu_ms_per_request"]:
            # Server CPU per request depends less on other work on the machine than rates do.
            row["cpu_per_request gateway/limit"] = round(
                (gateway["server"]["cpu_ms_per_request"] or 0)
                / limit["server"]["cpu_ms_per_request"],
                1,
            )
        naive = targets.get("naive")
        if naive is not None and naive["requests"] == 0:
            # None finished in the window: its rate is under 1/duration, so the ratio is over
            row["gateway/naive_at_least"] = round(gateway["rps"] * naive["duration_s"], 1)
        out[label] = row
    return out


def _ratio(run: dict[str, Any], other: dict[str, Any] | None) -> float | None:
    return round(run["rps"] / other["rps"], 4) if other is not None and other["rps"] else None


def fleet_vs_workers(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per worker count run both ways: the fleet's (with Redis) figures over the workers'
    (without): requests/s, PBX query calls, logins, the PBX's highest concurrency."""
    by_count: dict[int, dict[str, dict[str, Any]]] = {}
    for run in runs:
        if run["workload"] in ("workers", "fleet"):
            by_count.setdefault(run["workers"], {})[run["workload"]] = run
    rows = []
    for count in sorted(by_count):
        pair = by_count[count]
        if len(pair) != 2:
            continue
        alone, fleet = pair["workers"], pair["fleet"]
        rows.append(
            {
                "workers": count,
                "rps": [alone["rps"], fleet["rps"]],
                "rps_fleet/workers": round(fleet["rps"] / alone["rps"], 3)
                if alone["rps"]
                else None,
                "query_calls": [alone["pbx"]["query_calls"], fleet["pbx"]["query_calls"]],
                "pbx_per_100_requests": [
                    alone["pbx"]["per_100_requests"],
                    fleet["pbx"]["per_100_requests"],
                ],
                "startup_logins": [alone["pbx"]["startup_logins"], fleet["pbx"]["startup_logins"]],
                "window_logins": [alone["pbx"]["logins"], fleet["pbx"]["logins"]],
                "pbx_max_in_flight": [alone["pbx"]["max_in_flight"], fleet["pbx"]["max_in_flight"]],
                "p99_ms": [alone["latency_ms"]["p99"], fleet["latency_ms"]["p99"]],
                "errors": [alone["errors"]["total"], fleet["errors"]["total"]],
            }
        )
    return rows


def w3_scaling(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """w3 per room count: time per request, memory, state per room, against the limit."""
    rows: dict[int, dict[str, Any]] = {}
    for run in runs:
        if run["workload"] != "w3":
            continue
        row = rows.setdefault(run["rooms"], {"rooms": run["rooms"]})
        row[f"{run['target']}_ms_p50"] = run["latency_ms"]["p50"]
        row[f"{run['target']}_cpu_ms_per_request"] = run["server"]["cpu_ms_per_request"]
        row[f"{run['target']}_peak_rss_bytes"] = run["server"]["peak_rss_bytes"]
        if run["target"] == "gateway":
            row["response_bytes"] = run["response_bytes"]
            if run["state"]:
                row["state_bytes_per_room"] = run["state"]["bytes_per_room"]
                row["rss_after_fill_bytes"] = run["state"]["rss_after_fill_bytes"]
    ordered = [rows[rooms] for rooms in sorted(rows)]
    for row in ordered:
        limit_ms = row.get("limit_ms_p50")
        if limit_ms and row.get("gateway_ms_p50") is not None:
            row["gateway/limit_time"] = round(row["gateway_ms_p50"] / limit_ms, 2)
    for smaller, larger in itertools.pairwise(ordered):
        if "rss_after_fill_bytes" in smaller and "rss_after_fill_bytes" in larger:
            grown = larger["rss_after_fill_bytes"] - smaller["rss_after_fill_bytes"]
            larger["marginal_bytes_per_room"] = round(grown / (larger["rooms"] - smaller["rooms"]))
    return ordered


def environment(options: Options, loadgen: LoadGenerator, version: str) -> dict[str, Any]:
    """Machine, versions and choices, so two result files can be told apart."""
    packages: dict[str, str | None] = {}
    for name in ("strawberry-graphql", "graphql-core", "starlette", "uvicorn", "httpx",
                 "uvloop", "httptools", "orjson"):  # fmt: skip
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    peer_missing = peers.missing()
    return {
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "gateway_settings": SHIPPED_LABEL,
        "peers": {
            "node": peers.node_version() if peer_missing is None else None,
            "packages": peers.package_versions() if peer_missing is None else {},
            "missing": peer_missing,
        },
        "platform": platform.platform(),
        "cpus": _cpus(),
        "git": _git(),
        "loadgen": loadgen.name,
        "loadgen_version": version,
        "loop": options.stack.loop,
        "http": options.stack.http,
        "packages": packages,
    }


def options_json(options: Options) -> dict[str, Any]:
    """The options as JSON."""
    return {
        "duration_s": options.duration,
        "rounds": options.rounds,
        "w5_pool": options.w5_pool,
        "w4_duration_s": options.w4_duration,
        "w4_ttl_s": options.w4_ttl,
        "sizes": list(options.sizes),
        "worker_counts": list(options.worker_counts),
        "fleet_counts": list(options.fleet_counts or options.worker_counts),
        "workloads": list(options.workloads),
        "targets": list(options.targets),
        "pbx_latency_s": options.latency,
        "pbx_jitter_s": options.jitter,
        "pbx_serial": True,
        "connections": options.connections,
        "nice": options.nice,
        "budget_s": options.budget,
        "wait_quiet_s": options.wait_quiet,
        "fanout_sizes": list(options.fanout_sizes),
        "fanout_events": options.fanout_events,
        "fanout_rate": options.fanout_rate,
        "fanout_burst": options.fanout_burst,
        "fanout_modes": list(options.fanout_modes),
        "fanout_poll_interval_s": options.fanout_poll_interval,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(  # noqa: S603
            ["git", *args],  # noqa: S607 (git from PATH, as a developer runs it)
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }
