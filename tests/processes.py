"""Real processes for multi-replica tests: a Redis server and ``pbx-gateway serve`` replicas.

Redis is Debian's ``redis-server`` (``make test`` installs it when run as root), started
on a free loopback port with an append-only file so a restart keeps what it held. Each
gateway replica is the real command, configured only through its environment.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.loopback import free_port
from tests.timing import wait_until


@contextlib.contextmanager
def one_process_at_a_time(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock named after ``directory`` (for installing into it) across
    every process on this machine, so pytest-xdist's workers install there one at a time."""
    name = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
    lock = Path(tempfile.gettempdir()) / f"pbx-gateway-tests-{name}.lock"
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


class RedisProcess:
    """A redis-server on 127.0.0.1:<port>, with its data in ``directory``."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary, self.directory, self.port = binary, directory, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - fixed argument lists, no shell
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, what="redis-server start-up")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)  # Redis flushes its append-only file
            self.process.wait(timeout=10)
            self.process = None

    def _answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    """A fresh Redis server for one test."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.geteuid() == 0:  # make test installs it as root: missing here is a real failure
            pytest.fail("redis-server is missing; run `make test` (it installs it) or apt-get")
        pytest.skip("redis-server is not installed and this user cannot install it (not root)")
    server = RedisProcess(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class GatewayProcess:
    """``python -m gateway serve`` on a free port with the given environment."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - fixed argument lists, no shell
            [sys.executable, "-m", "gateway", "serve", "--port", str(self.port)],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> None:
        wait_until(
            lambda: httpx.get(f"{self.url}/readyz").status_code == 200,
            seconds=60,  # a cold interpreter on a busy 2-core machine
            what=f"gateway on {self.url} ready",
        )

    def readyz(self) -> dict[str, object]:
        body: dict[str, object] = httpx.get(f"{self.url}/readyz").json()
        return body

    def stop(self) -> int:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=20)
        self._log.close()
        return code
