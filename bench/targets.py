"""Starting the simulator and the three measured targets, and talking to them.

:class:`Simulator` wraps the simulated PBX's admin API (counters, reset) around its
process. :class:`TargetFactory` starts the gateway, the limit app or the naive app as
``python -m bench.serve KIND`` on a fresh port, all with the same uvicorn loop and HTTP
parser, and waits until each can answer (the gateway and the naive app: logged in).
For the fleet runs it also starts a ``redis-server`` (:class:`~bench.processes.RedisServer`)
and hands the gateway its URL and a fresh token key.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from bench import peers
from bench.limit import save_replies
from bench.processes import RedisServer, ServerProcess, free_port, python_module

SHIPPED_LABEL = (
    "gateway as shipped: request log on at info (JSON lines to the process's stderr, a "
    "file), no request rate limit, PBX-fetch budget 1/s burst 10 per client, cache TTL "
    "30 s; demo access (auth none, anonymous callers hold every scope, PINs included)"
)
"""The settings every gateway run uses unless its workload's ``settings_label`` says more:
``demo_settings`` (the simulator's credentials; the demo's open access, since the load
generators send no key) with nothing lifted."""


@dataclass(frozen=True)
class Stack:
    """The uvicorn event loop and HTTP parser every target runs on."""

    loop: str
    http: str

    @property
    def label(self) -> str:
        """``uvloop+httptools``."""
        return f"{self.loop}+{self.http}"

    @classmethod
    def best(cls) -> Stack:
        """What uvicorn's ``auto`` picks: uvloop and httptools when installed."""
        return cls("uvloop" if _importable("uvloop") else "asyncio",
                   "httptools" if _importable("httptools") else "h11")  # fmt: skip


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


class Simulator:
    """The simulated PBX process and its admin API."""

    def __init__(self, process: ServerProcess, *, report_port: int = 0) -> None:
        self.process, self.report_port = process, report_port
        self._http = httpx.Client(base_url=process.base_url, timeout=10.0)

    @property
    def url(self) -> str:
        """The PBX URL the gateway is given."""
        return self.process.base_url

    def stats(self) -> dict[str, Any]:
        """``GET /__simulator/stats``."""
        stats: dict[str, Any] = self._http.get("/__simulator/stats").json()
        return stats

    def settle(self, *, timeout: float = 20.0) -> None:
        """Wait until no API call is in flight, then zero the counters."""
        end = time.monotonic() + timeout
        while self.stats()["in_flight"] > 0 and time.monotonic() < end:
            time.sleep(0.05)
        self._http.post("/__simulator/reset").raise_for_status()

    def wait_for_logins(self, count: int, *, timeout: float = 30.0) -> None:
        """Until ``count`` logins have succeeded since the last reset."""
        end = time.monotonic() + timeout
        while self.stats()["logins_succeeded"] < count:
            if time.monotonic() > end:
                raise RuntimeError(f"the PBX saw fewer than {count} logins in {timeout:.0f} s")
            time.sleep(0.05)

    def close(self) -> None:
        """Stop the process."""
        self._http.close()
        self.process.stop()


class Target:
    """A running gateway, limit or naive app."""

    def __init__(
        self, kind: str, process: ServerProcess, info_path: Path, stack: Stack | str
    ) -> None:
        self.kind, self.process = kind, process
        self.stack_label = stack.label if isinstance(stack, Stack) else stack
        self._info_path = info_path
        self._http = httpx.Client(base_url=process.base_url, timeout=120.0)

    def post(self, body: str) -> bytes:
        """POST one body to ``/graphql``; the response bytes (an error unless 200)."""
        response = self._http.post(
            "/graphql", content=body.encode(), headers={"content-type": "application/json"}
        )
        if response.status_code != 200:
            raise RuntimeError(
                f"{self.kind} answered HTTP {response.status_code}: {response.text[:300]}"
            )
        return response.content

    def capture(self, bodies: tuple[str, ...]) -> dict[bytes, bytes]:
        """Each body's response; a GraphQL error stops the run (it would be measured)."""
        replies = {}
        for body in bodies:
            reply = self.post(body)
            if b'"errors":' in reply:
                raise RuntimeError(f"{self.kind} answered errors to {body[:80]}: {reply[:300]!r}")
            replies[body.encode()] = reply
        return replies

    def info(self) -> dict[str, Any]:
        """What the child wrote about itself (its event loop class, ignored settings)."""
        try:
            data: dict[str, Any] = json.loads(self._info_path.read_text())
        except (OSError, ValueError):
            return {}
        return data

    def close(self) -> None:
        """Stop the process."""
        self._http.close()
        self.process.stop()


class TargetFactory:
    """Starts targets on fresh ports, logging into ``workdir``."""

    def __init__(
        self, workdir: Path, stack: Stack, *, latency: float, jitter: float, nice: int = 0
    ) -> None:
        self.workdir, self.stack = workdir, stack
        self.latency, self.jitter, self.nice = latency, jitter, nice
        # The OS often hands the same free port out again: a target's files carry a
        # serial too, so a later target on a reused port never meets an earlier one's.
        self._serials = itertools.count(1)

    @contextlib.contextmanager
    def simulator(self, rooms: int, *, events: bool = True) -> Iterator[Simulator]:
        """A serial simulated PBX with ``rooms`` generated rooms, its TCP report port on a
        free port; ``events=False``: a firmware that sends no ConferenceStatus events."""
        port, report_port = free_port(), free_port()
        argv = python_module(
            "bench.serve", "simulator", "--port", str(port), "--rooms", str(rooms),
            "--latency", str(self.latency), "--jitter", str(self.jitter), "--serial",
            "--report-port", str(report_port), *(() if events else ("--no-events",)),
        )  # fmt: skip
        process = ServerProcess("simulator", argv, port=port, log_dir=self.workdir, nice=self.nice)
        process.start()
        simulator = Simulator(process, report_port=report_port)
        try:
            process.wait_ready("/__simulator/stats")
            yield simulator
        finally:
            simulator.close()

    @contextlib.contextmanager
    def peer(self, kind: str, simulator: Simulator, *, label: str) -> Iterator[Target]:
        """Peer ``kind`` (apollo or yoga) on Node, logged in to ``simulator``, answering."""
        port = free_port()
        process = ServerProcess(
            kind, peers.argv(kind), port=port, log_dir=self.workdir,
            env=peers.environment(simulator.url, port), nice=self.nice,
        )  # fmt: skip
        process.start()
        target = Target(kind, process, self.workdir / f"{kind}-{port}.info.json", label)
        try:  # each logs in before it listens: answering means logged in
            process.wait_ready("/graphql", timeout=60, post=b'{"query":"{ __typename }"}')
            yield target
        finally:
            target.close()

    @contextlib.contextmanager
    def redis(self, binary: str) -> Iterator[RedisServer]:
        """A redis-server on a fresh loopback port, answering PING."""
        server = RedisServer(binary, port=free_port(), log_dir=self.workdir, nice=self.nice)
        server.start()
        try:
            server.wait_answering()
            yield server
        finally:
            server.stop()

    @contextlib.contextmanager
    def target(
        self,
        kind: str,
        simulator: Simulator,
        *,
        stack: Stack | None = None,
        workers: int = 1,
        settings: Mapping[str, Any] | None = None,
        replies: Mapping[bytes, bytes] | None = None,
        argv_prefix: tuple[str, ...] = (),
        redis: RedisServer | None = None,
        as_shipped: bool = False,
    ) -> Iterator[Target]:
        """``kind`` (gateway, limit or naive) serving, ready, and logged in to the PBX.

        With ``redis`` the gateway's workers share it (``BENCH_REDIS_URL``, and a token key
        made for this process alone), so one login serves them all. ``as_shipped``: the
        gateway served as ``pbx-gateway serve`` serves it (the connection guard, WebSockets;
        see ``bench.serve``), on uvloop when installed, whatever ``stack`` says."""
        stack = stack or self.stack
        port = free_port()
        serial = next(self._serials)
        info_path = self.workdir / f"{kind}-{port}-{serial}.info.json"
        env = {
            "BENCH_PBX_URL": simulator.url,
            "BENCH_SETTINGS": json.dumps(dict(settings or {})),
            "BENCH_INFO": str(info_path),
        }
        if simulator.report_port:
            env["BENCH_REPORT_PORT"] = str(simulator.report_port)
        ready_dir = self.workdir / f"ready-{port}-{serial}"
        if kind == "gateway":
            ready_dir.mkdir()
            env["BENCH_READY_DIR"] = str(ready_dir)
        if redis is not None:
            env["BENCH_REDIS_URL"] = redis.url
            env["BENCH_REDIS_TOKEN_KEY"] = Fernet.generate_key().decode()
        if replies is not None:
            replies_path = self.workdir / f"replies-{port}-{serial}.json"
            save_replies(replies_path, replies)
            env["BENCH_REPLIES"] = str(replies_path)
        argv = [
            *argv_prefix,
            *python_module(
                "bench.serve", kind, "--port", str(port), "--workers", str(workers),
                "--loop", stack.loop, "--http", stack.http,
                *(("--as-shipped",) if as_shipped else ()),
            ),
        ]  # fmt: skip
        process = ServerProcess(
            kind, argv, port=port, log_dir=self.workdir, env=env, nice=self.nice
        )
        process.start()
        target = Target(kind, process, info_path, stack)
        try:
            process.wait_ready("/healthz" if kind == "limit" else "/readyz", timeout=60)
            if kind == "gateway":  # every worker, not just the one that answered /readyz
                _wait_for_files(ready_dir, workers, what=f"{workers} gateway workers started")
            if kind != "limit":  # without Redis each worker logs in; with it, one for all
                simulator.wait_for_logins(1 if redis is not None else workers)
            yield target
        finally:
            target.close()


def _wait_for_files(folder: Path, count: int, *, what: str, timeout: float = 60.0) -> None:
    """Until ``folder`` holds ``count`` files."""
    end = time.monotonic() + timeout
    while sum(1 for _ in folder.iterdir()) < count:
        if time.monotonic() > end:
            raise RuntimeError(f"not {what} within {timeout:.0f} s")
        time.sleep(0.05)
