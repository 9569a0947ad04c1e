#!/usr/bin/env python3
"""Chaos run: the real gateway against the simulated PBX on loopback, under random faults.

    .venv/bin/python scripts/chaos.py --duration 120 --clients 50 [--seed N] [--json out.json]

One asyncio loop holds everything, on 127.0.0.1 only: the simulator (``SimulatorServer``
with some latency), the gateway (``create_app`` under ``LoopbackServer``, with short TTLs
and cool-downs so caches, breaker and login guard turn over many times a minute), N
GraphQL clients sending a mix of queries (single rooms, aliases, lists, every room,
unknown numbers, invalid input), and a driver that every few seconds deals the next fault
from a shuffled deck: PBX down, stalls, garbage, dropped connections, errno 30003/20010,
expired tokens, changed credentials, a slow PBX. After ``--duration`` seconds the faults
are cleared, the gateway must serve fresh data again, both servers stop, and a report is
printed.

Invariants; any broken one makes the exit status 1:

- every error code is PBX_UNAVAILABLE, PBX_BUSY or PBX_AUTH_FAILED, and invalid input
  gets BAD_USER_INPUT (nothing else, and never an answer);
- no 5xx (or other non-200) status, no body that is not JSON;
- every room served (fresh or stale) is the PBX's room, and a known room is never
  reported missing without an error;
- every request finishes within GATEWAY_REQUEST_DEADLINE + ``--margin`` (httpx timeout);
- the PBX never locks the gateway's address out;
- no PBX token, password or password MD5 in any response body or log record;
- after the faults end the gateway serves fresh data again, and it stops in time.

The credentials fault: the gateway's login guard tries the same rejected credentials at
most twice in a row, ever. So the right password is restored well within the gateway's
login cool-down (its second try then succeeds), and the fault is dealt again only after
the gateway has logged in since (otherwise it is skipped, and the report says so).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from gateway.app import create_app
from gateway.demo import demo_settings
from gateway.pbx.breaker import CircuitState
from gateway.runtime import Runtime
from gateway.serving import LoopbackServer
from gateway.settings import Settings
from gateway.simulator import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    SimulatorConfig,
    SimulatorServer,
    password_digest,
)
from gateway.simulator.faults import GARBAGE_KINDS
from gateway.simulator.lockout import LoginLockout
from gateway.simulator.tokens import TokenStore

# Short enough that every cache, breaker and cool-down turns over many times in a run.
GATEWAY_OVERRIDES: Final[dict[str, Any]] = {
    "cache_ttl": 2.0,
    "revalidate_window": 1.0,
    "pbx_timeout": 1.0,
    "pbx_breaker_cooldown": 2.0,
    "request_deadline": 3.0,
    "pbx_login_cooldown": 5.0,
    "pbx_heartbeat_interval": 4.0,
    "shutdown_grace": 5,
}
ALLOWED_PBX_CODES: Final = frozenset({"PBX_UNAVAILABLE", "PBX_BUSY", "PBX_AUTH_FAILED"})
RATE_LIMITED: Final = "RATE_LIMITED"  # allowed only with --rate-limits
_NO_RATE_LIMITS: Final = {"rate": 1e6, "burst": 1e6, "miss_rate": 1e6, "miss_burst": 1e6}
INVALID_INPUT_CODE: Final = "BAD_USER_INPUT"
FAULT_KINDS: Final = (
    "pbx_down",
    "stall",
    "garbage",
    "drop",
    "errno",
    "expire_tokens",
    "credentials",
    "slow",
)
CHAOS_PASSWORD: Final = "rotated-by-chaos"  # noqa: S105 - the simulator's temporary password
ALL_QUERY: Final = "{ conferences { number name } }"
ONE_QUERY: Final = "{ conference(number: %s) { number name } }"
# How often each kind of query is sent.
PROBE_WEIGHTS: Final = {
    "single": 30,
    "aliases": 15,
    "list": 17,
    "all": 10,
    "all+single": 6,
    "unknown": 14,
    "invalid": 8,
}
_HEX32: Final = re.compile(r"[0-9a-fA-F]{32}")
_SAMPLES: Final = 8  # examples kept per broken invariant


@dataclass(frozen=True)
class ChaosConfig:
    """One run's shape; the defaults are the CLI's."""

    duration: float = 120.0
    clients: int = 50
    seed: int = 0
    pbx_latency: float = 0.02
    pbx_jitter: float = 0.03
    margin: float = 2.0
    """Seconds past the gateway's request deadline a client waits before calling it a hang."""
    fault_seconds: tuple[float, float] = (1.0, 4.0)
    calm_seconds: tuple[float, float] = (0.5, 3.0)
    think_seconds: float = 0.05
    """Each client pauses up to this long between requests."""
    mistyped_variables: bool = True
    """Include a variable of the wrong type among the invalid inputs."""
    faults: tuple[str, ...] = FAULT_KINDS
    """The kinds of fault dealt (all by default)."""
    rate_limits: bool = False
    """Keep the demo's per-client rate limits (all clients share 127.0.0.1's budget)."""
    gateway: dict[str, Any] = field(default_factory=lambda: dict(GATEWAY_OVERRIDES))


# --- the queries -------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One GraphQL request and what a correct answer holds.

    ``expected`` maps each top-level response key to its exact value whenever it is served
    (fresh or stale); ``None`` marks invalid input, which must be refused.
    """

    kind: str
    body: dict[str, Any]
    expected: dict[str, Any] | None


class ProbeMaker:
    """Random probes over the simulator's rooms (number -> name, numeric order)."""

    def __init__(self, rooms: dict[str, str], *, mistyped_variables: bool) -> None:
        self.rooms = rooms
        self.known = list(rooms)
        self.unknown = [str(n) for n in range(7000, 7020)]
        self.invalid_bodies = _invalid_bodies(mistyped_variables)

    def room(self, number: str) -> dict[str, str] | None:
        name = self.rooms.get(number)
        return None if name is None else {"number": number, "name": name}

    def make(self, rng: random.Random) -> Probe:
        """One probe, its kind drawn by the weights in ``PROBE_WEIGHTS``."""
        kind = rng.choices(list(PROBE_WEIGHTS), weights=list(PROBE_WEIGHTS.values()))[0]
        return getattr(self, "_" + kind.replace("+", "_"))(rng)  # type: ignore[no-any-return]

    def _single(self, rng: random.Random) -> Probe:
        number = rng.choice(self.known)
        if rng.random() < 0.5:
            body: dict[str, Any] = {"query": ONE_QUERY % f'"{number}"'}
        else:
            query = "query One($n: String!) { conference(number: $n) { number name } }"
            body = {"query": query, "variables": {"n": number}}
        return Probe("single", body, {"conference": self.room(number)})

    def _aliases(self, rng: random.Random) -> Probe:
        numbers = [rng.choice(self.known + self.unknown[:2]) for _ in range(rng.randint(2, 5))]
        fields = " ".join(
            f'a{i}: conference(number: "{n}") {{ number name }}' for i, n in enumerate(numbers)
        )
        expected = {f"a{i}": self.room(n) for i, n in enumerate(numbers)}
        return Probe("aliases", {"query": f"{{ {fields} }}"}, expected)

    def _list(self, rng: random.Random) -> Probe:
        numbers = rng.sample(self.known, rng.randint(1, 6))
        if rng.random() < 0.3:
            numbers.insert(rng.randrange(len(numbers) + 1), rng.choice(self.unknown))
        if rng.random() < 0.2:
            numbers.append(numbers[0])  # duplicates collapse
        listed = ", ".join(f'"{n}"' for n in numbers)
        query = f"{{ conferences(numbers: [{listed}]) {{ number name }} }}"
        rooms = [self.room(n) for n in dict.fromkeys(numbers)]
        return Probe("list", {"query": query}, {"conferences": [r for r in rooms if r]})

    def _all(self, rng: random.Random) -> Probe:
        everything = [self.room(n) for n in self.known]
        return Probe("all", {"query": ALL_QUERY}, {"conferences": everything})

    def _all_single(self, rng: random.Random) -> Probe:
        number = rng.choice(self.known)
        query = f'{{ conferences {{ number }} one: conference(number: "{number}") {{ name }} }}'
        expected: dict[str, Any] = {
            "conferences": [{"number": n} for n in self.known],
            "one": {"name": self.rooms[number]},
        }
        return Probe("all+single", {"query": query}, expected)

    def _unknown(self, rng: random.Random) -> Probe:
        number = rng.choice(self.unknown)
        return Probe("unknown", {"query": ONE_QUERY % f'"{number}"'}, {"conference": None})

    def _invalid(self, rng: random.Random) -> Probe:
        return Probe("invalid", rng.choice(self.invalid_bodies), None)


def _invalid_bodies(mistyped_variables: bool) -> list[dict[str, Any]]:
    """Requests the gateway must refuse with BAD_USER_INPUT, before any PBX call."""
    one = "{ conference(number: %s) { number } }"
    too_many = ", ".join(f'"{n}"' for n in range(8000, 8101))
    bodies: list[dict[str, Any]] = [
        {"query": one % '"all"'},
        {"query": one % '""'},
        {"query": one % '" 6400"'},
        {"query": one % '"64O0"'},
        {"query": one % '"6400,6401"'},
        {"query": '{ conferences(numbers: ["6400", "6401,6402"]) { number } }'},
        {"query": f"{{ conferences(numbers: [{too_many}]) {{ number }} }}"},
    ]
    if mistyped_variables:
        bodies.append(
            {
                "query": "query One($n: String!) { conference(number: $n) { number } }",
                "variables": {"n": 6400},
            }
        )
    return bodies


# --- watching the simulator ----------------------------------------------------------------


class _RecordingTokens(TokenStore):
    """The simulator's token store, remembering every token it issued (to look for leaks)."""

    def __init__(self) -> None:
        super().__init__()
        self.issued: set[str] = set()

    def issue(self, username: str, now: float) -> str:
        token = super().issue(username, now)
        self.issued.add(token)
        return token


class _WatchedLockout(LoginLockout):
    """The simulator's lockout book, remembering the worst it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.max_failures_in_a_row = 0
        self.lockouts = 0

    def record_failure(self, address: str, now: float, threshold: int, seconds: float) -> bool:
        locked = super().record_failure(address, now, threshold, seconds)
        self.max_failures_in_a_row = max(self.max_failures_in_a_row, self.failures(address))
        self.lockouts += locked
        return locked


# --- the report --------------------------------------------------------------------------


@dataclass
class ChaosReport:
    """Everything one run counted; ``violations`` empty means every invariant held."""

    seed: int
    duration: float
    clients: int
    hang_limit: float
    gateway_settings: dict[str, Any]
    requests: int = 0
    requests_by_kind: Counter[str] = field(default_factory=Counter)
    http_status: Counter[str] = field(default_factory=Counter)
    clean_answers: int = 0
    stale_answers: int = 0
    stale_by_code: Counter[str] = field(default_factory=Counter)
    answers_with_errors: int = 0
    errors_by_code: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    max_loop_lag: float = 0.0
    pbx_calls: dict[str, int] = field(default_factory=dict)
    pbx_logins: dict[str, int] = field(default_factory=dict)
    gateway_logins: dict[str, int] = field(default_factory=dict)
    max_pbx_in_flight: int = 0
    max_queue_depth: int = 0
    busy_rejections: int = 0
    breaker_openings: int = 0
    store: dict[str, int] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)
    fault_notes: list[str] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    lockout_seen: bool = False
    max_failed_logins_in_a_row: int = 0
    recovered_after: float | None = None
    pbx_logouts: int = 0
    log_records: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[str]] = field(default_factory=dict)

    def violate(self, invariant: str, detail: str) -> None:
        """Note a broken invariant, keeping the first few details."""
        self.violations[invariant] += 1
        kept = self.samples.setdefault(invariant, [])
        if len(kept) < _SAMPLES:
            kept.append(detail[:400])

    @property
    def ok(self) -> bool:
        """Whether every invariant held."""
        return not self.violations

    def latency_summary(self) -> dict[str, float]:
        """p50 / p99 / max of client-observed request times, in seconds."""
        if not self.latencies:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        ordered = sorted(self.latencies)

        def pick(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 3)

        return {"p50": pick(0.50), "p99": pick(0.99), "max": round(ordered[-1], 3)}

    def as_json(self) -> dict[str, Any]:
        """The whole report as JSON-ready data (``--json``)."""
        # Not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs, as keys.
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data = {k: dict(v) if isinstance(v, Counter) else v for k, v in data.items()}
        data.pop("latencies")
        data["latency_seconds"] = self.latency_summary()
        data["ok"] = self.ok
        return data

    def as_text(self) -> str:
        """The report a person reads at the end of a run."""

        def counts(counter: Counter[str] | dict[str, int]) -> str:
            items = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
            return ", ".join(f"{key} {value}" for key, value in items) or "none"

        lat = self.latency_summary()
        s = self.gateway_settings
        lines = [
            f"chaos: {self.duration:g} s, {self.clients} clients, seed {self.seed}",
            "  gateway: " + ", ".join(f"{k}={v}" for k, v in s.items()),
            "",
            f"requests served       {self.requests}  ({counts(self.requests_by_kind)})",
            f"  HTTP status         {counts(self.http_status)}",
            f"  clean answers       {self.clean_answers}",
            f"  stale answers       {self.stale_answers}  ({counts(self.stale_by_code)})",
            f"  answers with errors {self.answers_with_errors}",
            f"  errors by code      {counts(self.errors_by_code)}",
            f"  latency (s)         p50 {lat['p50']}, p99 {lat['p99']}, max {lat['max']}"
            f"  (hang limit {self.hang_limit:g}; event loop late by up to {self.max_loop_lag} s)",
            "",
            f"PBX calls             {counts(self.pbx_calls)}",
            f"logins (PBX's count)  {counts(self.pbx_logins)}",
            f"logins (gateway's)    {counts(self.gateway_logins)}",
            f"max PBX concurrency   {self.max_pbx_in_flight}  (simulator's max_in_flight;"
            f" gateway cap {s['pbx_max_concurrency']})",
            f"max queue depth       {self.max_queue_depth}  (PbxLimiter.max_waiting_seen;"
            f" {self.busy_rejections} refused as PBX_BUSY)",
            f"breaker openings      {self.breaker_openings}",
            f"store                 {counts(self.store)}",
            f"PBX logouts           {self.pbx_logouts}",
            "",
            f"faults injected       {sum(self.faults.values())}  ({counts(self.faults)})",
            *(f"  note: {note}" for note in self.fault_notes),
            f"lockout               {'YES' if self.lockout_seen else 'never'}"
            f"  (most failed logins in a row: {self.max_failed_logins_in_a_row})",
            "recovered             "
            + (
                "NO"
                if self.recovered_after is None
                else f"fresh from the PBX {self.recovered_after:.1f} s after the faults"
            ),
            f"log records           {counts(self.log_records)}",
            "",
        ]
        if self.ok:
            lines.append("invariants            all held")
        else:
            lines.append(f"INVARIANTS BROKEN     {counts(self.violations)}")
            for invariant, details in sorted(self.samples.items()):
                lines.extend(f"  {invariant}: {detail}" for detail in details)
        return "\n".join(lines)


# --- checking answers --------------------------------------------------------------------


class Checker:
    """Counts each answer into the report and checks it against the invariants."""

    def __init__(self, report: ChaosReport, tokens: _RecordingTokens, *, rate_limits: bool) -> None:
        self.report = report
        self._tokens = tokens
        self._allowed = ALLOWED_PBX_CODES | ({RATE_LIMITED} if rate_limits else set())
        self._statuses = {200, 429} if rate_limits else {200}
        self._passwords = (DEMO_PASSWORD, CHAOS_PASSWORD)
        self._digests = {password_digest(p) for p in self._passwords}

    def leaked(self, text: str) -> str | None:
        """What secret ``text`` holds, if any: a token, a password, an MD5, or 32 hex."""
        for password in self._passwords:
            if password in text:
                return "a PBX password"
        for match in _HEX32.finditer(text):
            value = match.group(0).lower()
            if value in self._tokens.issued:
                return "a PBX token"
            if value in self._digests:
                return "a password MD5"
            return f"32 hex digits {value[:6]}..."
        return None

    def answer(self, probe: Probe, response: httpx.Response, elapsed: float) -> None:
        report = self.report
        report.requests += 1
        report.requests_by_kind[probe.kind] += 1
        report.http_status[str(response.status_code)] += 1
        report.latencies.append(elapsed)
        what = f"{probe.kind} {json.dumps(probe.body)[:160]}"
        if response.status_code >= 500:
            report.violate("http_5xx", f"HTTP {response.status_code} for {what}")
        elif response.status_code not in self._statuses:
            report.violate("http_status", f"HTTP {response.status_code} for {what}")
        secret = self.leaked(response.text)
        if secret is not None:
            report.violate("secret_in_response", f"{secret} in the answer to {what}")
        try:
            body = response.json()
        except ValueError:
            report.violate("non_json", f"{response.text[:80]!r} for {what}")
            return
        if not isinstance(body, dict):
            report.violate("non_json", f"not an object: {response.text[:80]!r} for {what}")
            return
        errors = body.get("errors") or []
        codes = [str((e.get("extensions") or {}).get("code", "(none)")) for e in errors]
        report.errors_by_code.update(codes)
        report.answers_with_errors += bool(errors)
        stale = (body.get("extensions") or {}).get("stale")
        if stale:
            report.stale_answers += 1
            report.stale_by_code[str(stale.get("code"))] += 1
        if not errors and not stale:
            report.clean_answers += 1
        if probe.expected is None:
            if not errors:
                report.violate("invalid_input_accepted", what)
            for code, error in zip(codes, errors, strict=True):
                if code != INVALID_INPUT_CODE:
                    report.violate(
                        "unexpected_error_code", f"{code} for {what}: {error.get('message')}"
                    )
            return
        for code, error in zip(codes, errors, strict=True):
            if code not in self._allowed:
                report.violate(
                    "unexpected_error_code", f"{code} for {what}: {error.get('message')}"
                )
        self._check_data(probe.expected, body.get("data"), errors, what)

    def _check_data(
        self, expected: dict[str, Any], data: Any, errors: list[Any], what: str
    ) -> None:
        if data is None:
            if not errors:
                self.report.violate("wrong_data", f"no data and no errors for {what}")
            return
        failed = {str(e["path"][0]) for e in errors if e.get("path")}
        for key, want in expected.items():
            got = data.get(key)
            if got is None and want is not None:
                if key not in failed:
                    self.report.violate("wrong_data", f"{key} is null without an error for {what}")
            elif got != want:
                self.report.violate("wrong_data", f"{key}: got {json.dumps(got)[:120]} for {what}")

    def hang(self, probe: Probe, elapsed: float, detail: str, stalled: float) -> None:
        self.report.violate(
            "hang",
            f"{probe.kind}: {elapsed:.1f} s ({detail}); the event loop was stalled "
            f"{stalled:.1f} s of it",
        )

    def unreachable(self, probe: Probe, exc: httpx.HTTPError) -> None:
        self.report.violate("gateway_unreachable", f"{type(exc).__name__}: {exc} for {probe.kind}")


class _LogWatch(logging.Handler):
    """Counts log records by level and logger, and looks for secrets in each."""

    def __init__(self, report: ChaosReport, checker: Checker) -> None:
        super().__init__(logging.INFO)
        self._report, self._checker = report, checker

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a broken log call is the logger's bug, not a leak
            text = str(record.msg)
        self._report.log_records[f"{record.levelname} {record.name}"] += 1
        secret = self._checker.leaked(text)
        if secret is not None:
            self._report.violate("secret_in_log", f"{secret} in {record.name}: {text[:200]}")
        if record.levelno >= logging.ERROR and record.name.startswith("gateway.schema"):
            # ErrorCodes logs exactly the errors it masks as INTERNAL_ERROR: gateway bugs.
            self._report.violate("gateway_bug_logged", f"{record.name}: {record.getMessage()}")


@contextlib.contextmanager
def _watching_logs(handler: logging.Handler) -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    if level > logging.INFO:  # NOTSET (0) already lets everything through
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


class LoopLag:
    """How late the shared event loop wakes a sleeper. Gateway, simulator and clients share
    one loop, so on a busy machine a late answer may be CPU starvation, not the gateway:
    each hang's detail says how long the loop was stalled meanwhile."""

    PERIOD: Final = 0.05

    def __init__(self) -> None:
        self.stalls: list[tuple[float, float]] = []  # (when it ended, seconds late)
        self.worst = 0.0

    async def run(self, stop_at: float) -> None:
        while time.monotonic() < stop_at:
            before = time.monotonic()
            await asyncio.sleep(self.PERIOD)
            late = time.monotonic() - before - self.PERIOD
            self.worst = max(self.worst, late)
            if late > self.PERIOD:
                self.stalls.append((time.monotonic(), late))

    def stalled_between(self, start: float, end: float) -> float:
        """Seconds the loop was stalled (late by more than a period) within ``start..end``."""
        return sum(late for when, late in self.stalls if start < when <= end + self.PERIOD)


# --- the fault driver ----------------------------------------------------------------------


class FaultDriver:
    """Deals faults from a shuffled deck of every kind, one at a time, until the run ends."""

    def __init__(
        self,
        sim: SimulatorServer,
        runtime: Runtime,
        config: ChaosConfig,
        rng: random.Random,
        report: ChaosReport,
        clock: Callable[[], float],
    ) -> None:
        self.sim, self.runtime, self.config = sim, runtime, config
        self.rng, self.report, self.clock = rng, report, clock
        self._started = clock()
        self._deck: list[str] = []
        self._credentials_changed = False
        self._logins_at_restore = -1  # no credentials fault yet
        self._credential_skips = 0

    async def run(self, stop_at: float) -> None:
        try:
            while True:
                calm = self.rng.uniform(*self.config.calm_seconds)
                if self.clock() + calm >= stop_at:
                    break
                await asyncio.sleep(calm)
                hold = min(self.rng.uniform(*self.config.fault_seconds), stop_at - self.clock())
                kind = self._deal()
                if kind is None:
                    await asyncio.sleep(hold)
                else:
                    await self._inject(kind, hold)
        finally:
            self.undo_all()
            if self._credential_skips:
                self.report.fault_notes.append(
                    f"credentials fault skipped {self._credential_skips} time(s): the gateway had "
                    "not logged in again since the last one (its login guard would count a "
                    "second rejection in a row and never try those credentials again)"
                )

    def _deal(self) -> str | None:
        """The next fault, or None when the only one left may not be dealt yet."""
        for _ in range(len(self.config.faults) + 1):
            if not self._deck:
                self._deck = list(self.config.faults)
                self.rng.shuffle(self._deck)
            kind = self._deck.pop()
            if kind != "credentials" or self._credentials_may_change():
                return kind
            self._credential_skips += 1  # this round of the deck goes on without it
        return None

    def _credentials_may_change(self) -> bool:
        session = self.runtime.session
        return session.logins > self._logins_at_restore and session.blocked_reason is None

    async def _inject(self, kind: str, hold: float) -> None:
        state, rng = self.sim.state, self.rng
        endpoint = rng.choice([None, "conference/query"])
        count = -1 if rng.random() < 0.7 else rng.randint(1, 3)
        where = f"{endpoint or 'any'} x{'all' if count == -1 else count}"
        if kind == "pbx_down":
            label = "pbx_down"
            self.sim.go_down(hold)
        elif kind == "stall":
            seconds = rng.uniform(1.5, 10.0)
            label = f"stall {where}"
            state.stall_next(count, seconds, endpoint)
        elif kind == "garbage":
            garbage = rng.choice(GARBAGE_KINDS)
            label = f"garbage:{garbage} {where}"
            state.garbage_next(count, garbage, endpoint)  # type: ignore[arg-type]
        elif kind == "drop":
            label = f"drop {where}"
            state.drop_next(count, endpoint)
        elif kind == "errno":
            errno = rng.choice(["30003", "20010"])
            label = f"errno:{errno} {where}"
            state.fail_next(count, errno, endpoint)
        elif kind == "expire_tokens":
            label = "expire_tokens"
            state.expire_tokens()
        elif kind == "credentials":
            # Restored within half the gateway's login cool-down: its next try succeeds.
            hold = min(hold, self.runtime.settings.pbx_login_cooldown / 2)
            label = "credentials"
            state.set_credentials(DEMO_USERNAME, CHAOS_PASSWORD)
            self._credentials_changed = True
        else:
            latency = rng.uniform(0.4, 1.6)
            label = f"slow latency {latency:.1f}s"
            state.configure(latency=latency)
        self.report.faults[label.split(" ")[0]] += 1
        self.report.timeline.append(
            {
                "at": round(self.clock() - self._started, 2),
                "fault": label,
                "seconds": round(hold, 2),
            }
        )
        await asyncio.sleep(hold)
        self._undo(kind)

    def _undo(self, kind: str) -> None:
        state = self.sim.state
        if kind == "pbx_down":
            self.sim.come_up()  # a no-op if its own timer already brought it back
        elif kind in ("stall", "garbage", "drop", "errno"):
            state.clear_faults()
        elif kind == "credentials":
            self._restore_credentials()
        elif kind == "slow":
            state.configure(latency=self.config.pbx_latency)

    def _restore_credentials(self) -> None:
        if self._credentials_changed:
            self.sim.state.set_credentials(DEMO_USERNAME, DEMO_PASSWORD)
            self._credentials_changed = False
            self._logins_at_restore = self.runtime.session.logins

    def undo_all(self) -> None:
        """Every fault off: the PBX up, fast, with its real credentials."""
        self.sim.state.clear_faults()
        self.sim.come_up()
        self.sim.state.configure(latency=self.config.pbx_latency, jitter=self.config.pbx_jitter)
        self._restore_credentials()


# --- the run -----------------------------------------------------------------------------


def _http_client(base_url: str, limit: float) -> httpx.AsyncClient:
    # One connection per client: a pool shared by 50 callers costs httpcore more CPU than
    # the gateway itself, which would make the load generator the bottleneck.
    return httpx.AsyncClient(
        base_url=base_url, timeout=httpx.Timeout(limit), limits=httpx.Limits(max_connections=1)
    )


async def _client(
    base_url: str,
    maker: ProbeMaker,
    checker: Checker,
    rng: random.Random,
    stop_at: float,
    limit: float,
    think: float,
    lag: LoopLag,
) -> None:
    clock = time.monotonic
    async with _http_client(base_url, limit) as http:
        while clock() < stop_at:
            probe = maker.make(rng)
            started = clock()
            try:
                response = await http.post("/graphql", json=probe.body)
            except httpx.TimeoutException as exc:
                stalled = lag.stalled_between(started, clock())
                checker.hang(probe, clock() - started, type(exc).__name__, stalled)
            except httpx.HTTPError as exc:
                checker.unreachable(probe, exc)
            else:
                elapsed = clock() - started
                checker.answer(probe, response, elapsed)
                if elapsed > limit:
                    stalled = lag.stalled_between(started, clock())
                    checker.hang(probe, elapsed, "answered too late", stalled)
            await asyncio.sleep(rng.uniform(0.0, think))


async def _recover(
    base_url: str, maker: ProbeMaker, runtime: Runtime, sim: SimulatorServer, limit: float
) -> float | None:
    """Seconds until the gateway works as before the faults, or None after ``limit``.

    Working means: every room answered with no error and no stale mark, the breaker
    closed, a token held, and the PBX asked at least once since the faults ended (an answer
    from the cache alone proves nothing about the way to the PBX).
    """
    started = time.monotonic()
    queries_before = sim.state.stats.calls["conference/query"]
    expected = {"data": {"conferences": [maker.room(n) for n in maker.known]}}
    async with _http_client(base_url, limit) as http:
        while time.monotonic() - started < limit:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                response = await http.post("/graphql", json={"query": ALL_QUERY})
                if (
                    response.status_code == 200
                    and response.json() == expected
                    and sim.state.stats.calls["conference/query"] > queries_before
                    and runtime.client.breaker.state is CircuitState.CLOSED
                    and runtime.session.has_token
                ):
                    return time.monotonic() - started
            await asyncio.sleep(0.25)
    return None


def gateway_settings(pbx_url: str, overrides: dict[str, Any], *, rate_limits: bool) -> Settings:
    """The demo settings pointed at ``pbx_url``, with the chaos run's short timings and,
    unless ``rate_limits``, no per-client rate limits (every chaos client is 127.0.0.1)."""
    settings = dataclasses.replace(demo_settings(pbx_url), **overrides)
    security = getattr(settings, "security", None)
    if security is None or rate_limits:
        return settings
    unlimited = {k: v for k, v in _NO_RATE_LIMITS.items() if hasattr(security, k)}
    return dataclasses.replace(settings, **{"security": dataclasses.replace(security, **unlimited)})


def _recovery_limit(settings: Settings, hang_limit: float) -> float:
    """Long enough for a login cool-down, a breaker cool-down and a cache turnover."""
    return (
        settings.pbx_login_cooldown
        + settings.pbx_breaker_cooldown
        + settings.cache_ttl
        + settings.revalidate_window
        + hang_limit
        + 5.0
    )


async def run_chaos(config: ChaosConfig) -> ChaosReport:
    """One chaos run; the report says what happened and which invariants broke."""
    rng = random.Random(config.seed)
    sim = SimulatorServer(SimulatorConfig(latency=config.pbx_latency, jitter=config.pbx_jitter))
    tokens, lockout = _RecordingTokens(), _WatchedLockout()
    sim.state.tokens, sim.state.lockout = tokens, lockout
    rooms = {str(r["number"]): str(r["name"]) for r in sim.state.book.all()}
    maker = ProbeMaker(rooms, mistyped_variables=config.mistyped_variables)
    await sim.start()
    settings = gateway_settings(sim.base_url, config.gateway, rate_limits=config.rate_limits)
    hang_limit = settings.request_deadline + config.margin
    report = ChaosReport(
        seed=config.seed,
        duration=config.duration,
        clients=config.clients,
        hang_limit=hang_limit,
        gateway_settings={
            name: getattr(settings, name)
            for name in sorted({*config.gateway, "pbx_max_concurrency", "pbx_max_waiting"})
        },
    )
    checker = Checker(report, tokens, rate_limits=config.rate_limits)
    gateway = LoopbackServer(create_app(settings), graceful_shutdown=settings.shutdown_grace)
    try:
        with _watching_logs(_LogWatch(report, checker)):
            await gateway.start()
            runtime: Runtime = gateway.app.runtime
            await runtime.session.started()
            driver = FaultDriver(sim, runtime, config, rng, report, time.monotonic)
            lag = LoopLag()
            stop_at = time.monotonic() + config.duration
            clients = [
                _client(
                    gateway.base_url,
                    maker,
                    checker,
                    random.Random(rng.getrandbits(64)),
                    stop_at,
                    hang_limit,
                    config.think_seconds,
                    lag,
                )
                for _ in range(config.clients)
            ]
            await asyncio.gather(driver.run(stop_at), lag.run(stop_at), *clients)
            report.max_loop_lag = round(lag.worst, 3)
            limit = _recovery_limit(settings, hang_limit)
            report.recovered_after = await _recover(gateway.base_url, maker, runtime, sim, limit)
            if report.recovered_after is None:
                report.violate(
                    "not_recovered",
                    f"no fresh answer within {limit:.0f} s after the faults ended (logins "
                    f"blocked by: {runtime.session.blocked_reason!r}; breaker "
                    f"{runtime.client.breaker.state.value})",
                )
            try:
                async with asyncio.timeout(settings.shutdown_grace + 10):
                    await gateway.stop()
            except TimeoutError:
                report.violate("shutdown_hung", "the gateway did not stop within its grace")
            _collect(report, runtime, sim, lockout)
    finally:
        await gateway.stop()
        await sim.stop()
    return report


def _collect(
    report: ChaosReport, runtime: Runtime, sim: SimulatorServer, lockout: _WatchedLockout
) -> None:
    stats = sim.state.stats
    report.pbx_calls = dict(stats.calls)
    report.pbx_logins = {
        "succeeded": stats.logins_succeeded,
        "failed": stats.logins_failed,
        "locked": stats.logins_locked,
    }
    report.gateway_logins = {
        "succeeded": runtime.session.logins,
        "failed": runtime.session.failed_logins,
    }
    report.pbx_logouts = stats.logouts
    report.max_pbx_in_flight = stats.max_in_flight
    report.max_queue_depth = runtime.client.limiter.max_waiting_seen
    report.busy_rejections = runtime.client.limiter.rejected
    report.breaker_openings = runtime.client.breaker.opened_count
    report.store = dataclasses.asdict(runtime.store.stats)
    report.max_failed_logins_in_a_row = lockout.max_failures_in_a_row
    locked_now = sim.state.lockout.locked_addresses(sim.state.now())
    report.lockout_seen = bool(lockout.lockouts or stats.logins_locked or locked_now)
    if report.lockout_seen:
        report.violate(
            "lockout",
            f"the PBX locked {locked_now or 'an address'} out "
            f"({lockout.lockouts} lockouts, {stats.logins_locked} logins refused as locked)",
        )


# --- the command -------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the gateway against the simulated PBX under random faults (loopback).",
    )
    parser.add_argument("--duration", type=float, default=120.0, help="seconds (default 120)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.add_argument(
        "--margin",
        type=float,
        default=2.0,
        help="seconds past the deadline that count as a hang (default 2)",
    )
    parser.add_argument(
        "--pbx-latency", type=float, default=0.02, help="simulated PBX latency (default 0.02 s)"
    )
    parser.add_argument(
        "--faults",
        default=",".join(FAULT_KINDS),
        help=f"comma list of fault kinds to deal (default all: {','.join(FAULT_KINDS)})",
    )
    parser.add_argument(
        "--rate-limits",
        action="store_true",
        help="keep the demo's per-client rate limits (then RATE_LIMITED and 429 are allowed)",
    )
    parser.add_argument(
        "--no-mistyped-variables",
        action="store_true",
        help="leave the wrongly typed variable out of the invalid inputs",
    )
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.clients < 1:
        parser.error("--duration must be > 0 and --clients at least 1")
    args.faults = tuple(kind.strip() for kind in args.faults.split(",") if kind.strip())
    unknown = sorted(set(args.faults) - set(FAULT_KINDS))
    if unknown or not args.faults:
        parser.error(f"--faults takes kinds among {', '.join(FAULT_KINDS)}; got {unknown}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    config = ChaosConfig(
        duration=args.duration,
        clients=args.clients,
        seed=seed,
        margin=args.margin,
        pbx_latency=args.pbx_latency,
        mistyped_variables=not args.no_mistyped_variables,
        faults=args.faults,
        rate_limits=args.rate_limits,
    )
    report = asyncio.run(run_chaos(config))
    print(report.as_text(), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(report.as_json(), out, indent=2, sort_keys=True)
            out.write("\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
