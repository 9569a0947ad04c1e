"""Target processes: start one on a loopback port, wait for it, measure it, stop it.

Each target is a child process with its own log file and its own session (so a Ctrl-C in
the terminal reaches the harness only, which then stops its children by pid). Memory and
CPU come from ``/proc``: ``VmHWM`` is the kernel's own peak resident set of a process, and
``utime + stime`` its CPU seconds; for ``uvicorn --workers`` the whole process tree counts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: children run there, so ``python -m bench.serve`` finds the code."""

_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A loopback port free right now (the child binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_tree(pid: int) -> list[int]:
    """``pid`` and every descendant still alive (uvicorn's workers, their helpers)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        if not Path(f"/proc/{current}").exists():
            continue
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError):
                    queue.extend(int(child) for child in (task / "children").read_text().split())
    return found


def raise_priority(pid: int, nice: int) -> None:
    """Give ``pid`` (and its session) the CPU weight of ``nice``, if allowed.

    Linux shares CPU between sessions first (autogroups), then between processes of a
    session, so the session's nice is what counts against other work on the machine.
    """
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, nice)
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))


def _status_bytes(pid: int, key: str) -> int:
    """A ``kB`` line of ``/proc/<pid>/status`` in bytes; 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15)


def _run_seconds(pid: int) -> float | None:
    """Seconds ``pid``'s live threads have run, to the microsecond: the scheduler's
    ``se.sum_exec_runtime`` (ms) of each ``/proc/<pid>/task/*/sched``; None when the kernel
    does not show it. ``utime + stime`` count 10 ms ticks, too coarse for a small burst."""
    total = 0.0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for line in (task / "sched").read_text().splitlines():
                if line.startswith("se.sum_exec_runtime"):
                    total += float(line.split(":", 1)[1])
                    break
            else:
                return None
    except (OSError, ValueError):
        return None
    return total / 1000


def precise_cpu_seconds(pid: int) -> float:
    """CPU seconds one process's live threads have used, to the microsecond where the
    kernel shows it (a thread that ended no longer counts), else :func:`cpu_seconds`."""
    found = _run_seconds(pid)
    return _cpu_seconds(pid) if found is None else found


def rss_bytes(pid: int) -> int:
    """Resident bytes of one process now (``VmRSS``); 0 when it is gone."""
    return _status_bytes(pid, "VmRSS")


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) one process has used; 0 when it is gone."""
    return _cpu_seconds(pid)


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has been busy since boot (``/proc/stat``),
    steal included: what the machine did, ours or not."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICKS


@dataclass(frozen=True)
class Sample:
    """One look at a target's processes."""

    pids: tuple[int, ...]
    rss: int
    """Resident bytes now, summed over the tree."""
    peak_rss: int
    """``VmHWM`` summed over the tree: each process's own peak resident bytes."""
    cpu_seconds: float


class ServerProcess:
    """One target: a child process serving HTTP on ``127.0.0.1:port``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        nice: int = 0,
    ) -> None:
        self.name, self.port, self.nice = name, port, nice
        self.log_path = log_dir / f"{name}-{port}.log"
        self._argv = list(argv)
        self._env = {**os.environ, **(env or {})}
        self._proc: subprocess.Popen[bytes] | None = None
        self._known_pids: set[int] = set()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:port``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The child's pid (the uvicorn master when it has workers)."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._proc.pid

    def start(self) -> None:
        """Start the child; its stdout and stderr go to ``log_path``."""
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
                self._argv,
                cwd=ROOT,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if self.nice:
            raise_priority(self._proc.pid, self.nice)

    def wait_ready(self, path: str, *, timeout: float = 30.0, post: bytes | None = None) -> None:
        """Poll ``GET path`` (``POST`` of ``post`` when given, as JSON) until it answers 200;
        raise with the log's tail if it never does."""
        end = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=2.0) as http:
            while time.monotonic() < end:
                if self._proc is not None and self._proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited at start-up:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    response = (
                        http.get(path)
                        if post is None
                        else http.post(
                            path, content=post, headers={"content-type": "application/json"}
                        )
                    )
                    if response.status_code == 200:
                        self._known_pids.update(process_tree(self.pid))
                        return
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def sample(self) -> Sample:
        """RSS, peak RSS and CPU seconds of the process tree now."""
        pids = process_tree(self.pid)
        self._known_pids.update(pids)
        return Sample(
            pids=tuple(pids),
            rss=sum(_status_bytes(pid, "VmRSS") for pid in pids),
            peak_rss=sum(_status_bytes(pid, "VmHWM") for pid in pids),
            cpu_seconds=sum(_cpu_seconds(pid) for pid in pids),
        )

    def stop(self, *, timeout: float = 8.0) -> None:
        """SIGTERM (uvicorn's graceful stop), then SIGKILL for anything of ours still alive."""
        proc = self._proc
        if proc is None:
            return
        self._known_pids.update(process_tree(proc.pid))
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        for pid in self._known_pids - {proc.pid}:  # workers orphaned by a killed master
            with contextlib.suppress(OSError):
                if os.getsid(pid) == proc.pid:  # still ours: the session the child leads
                    os.kill(pid, signal.SIGKILL)
        self._proc = None

    def stop_wrapped(self, *, timeout: float = 60.0) -> None:
        """For a wrapper (py-spy): SIGTERM what it runs, then wait for the wrapper to end."""
        proc = self._proc
        if proc is None:
            return
        for pid in process_tree(proc.pid)[1:2]:  # the wrapped command, the wrapper's child
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the child's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def python_module(module: str, *args: str) -> list[str]:
    """``python -m module args...`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


class RedisServer(ServerProcess):
    """``redis-server`` on ``127.0.0.1:port`` for the fleet runs: nothing persisted
    (``--save ""``, ``--appendonly no``), so it starts in milliseconds and leaves no file.
    It speaks RESP, not HTTP: :meth:`command` is a minimal client for the harness's own
    questions (PING, FLUSHALL, INFO), each on its own short connection."""

    def __init__(self, binary: str, *, port: int, log_dir: Path, nice: int = 0) -> None:
        argv = [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(log_dir), "--logfile", "",
        ]  # fmt: skip
        super().__init__("redis", argv, port=port, log_dir=log_dir, nice=nice)

    @property
    def url(self) -> str:
        """What the gateway is given as its Redis URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, *words: str, timeout: float = 5.0) -> bytes | int:
        """One command; its reply (a bulk or simple string as bytes, an integer as int)."""
        encoded = [word.encode() for word in words]
        request = b"*%d\r\n" % len(encoded) + b"".join(
            b"$%d\r\n%s\r\n" % (len(word), word) for word in encoded
        )
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(request)
            with sock.makefile("rb") as reply:
                line = reply.readline()
                kind, rest = line[:1], line[1:].rstrip(b"\r\n")
                if kind == b"+":
                    return rest
                if kind == b":":
                    return int(rest)
                if kind == b"$":
                    size = int(rest)
                    return b"" if size < 0 else reply.read(size + 2)[:-2]
                raise RuntimeError(f"redis answered {line!r} to {words[0]}")

    def info(self) -> dict[str, str]:
        """``INFO``'s fields (all sections) as strings."""
        text = self.command("INFO", "all")
        assert isinstance(text, bytes)
        fields: dict[str, str] = {}
        for line in text.decode().splitlines():
            name, colon, value = line.partition(":")
            if colon and not name.startswith("#"):
                fields[name] = value
        return fields

    def flush(self) -> None:
        """Forget everything (each fleet run starts as a fresh fleet: no token, no cache)."""
        self.command("FLUSHALL")

    def wait_answering(self, *, timeout: float = 15.0) -> None:
        """Until PING answers PONG; raise with the log's tail if it never does."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited at start-up:\n{self.log_tail()}")
            with contextlib.suppress(OSError, RuntimeError):
                if self.command("PING", timeout=1.0) == b"PONG":
                    self._known_pids.update(process_tree(self.pid))
                    return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server not answering after {timeout:.0f} s:\n{self.log_tail()}")
