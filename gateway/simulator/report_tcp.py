"""The TCP report method: the application connects to the PBX's report port and logs in.

api-reports.html / api-authentication.html: the application is the TCP client; it sends the
login as plain-text lines, the password in clear::

    Action: login
    Username: api
    Secret: yeastar-demo
    Version: 2.0.0

and only after an accepted login does the PBX send events, on the same connection, until it
closes. What the docs do not show is chosen here and listed in the README: the login block
ends with an empty line (as AMI's does); the answer is ``Response: Success`` or
``Response: Error`` plus a ``Message`` line and an empty line; a refused login closes the
connection; events follow as one compact JSON object per CRLF-ended line. A failed login
counts toward the same lockout as API logins (the caller's address), and a locked address is
refused even with the right secret. The connection is for events only: anything the client
sends after the login is read and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from gateway.simulator.state import SimulatorState

LOGIN_TIMEOUT_SECONDS = 10.0
MAX_LOGIN_BYTES = 4096
ACCEPTED = b"Response: Success\r\nMessage: Authentication accepted\r\n\r\n"
REFUSED = b"Response: Error\r\nMessage: Authentication failed\r\n\r\n"
LOCKED = b"Response: Error\r\nMessage: IP locked\r\n\r\n"


class _Connection:
    """One logged-in report connection (``report_hub.ReportConnection``)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    def send(self, data: bytes) -> int:
        if self._writer.is_closing():
            return 0
        self._writer.write(data)
        return self._writer.transport.get_write_buffer_size()

    def close(self) -> None:
        self._writer.close()


async def read_login_block(reader: asyncio.StreamReader) -> dict[str, str] | None:
    """``Key: value`` lines up to an empty line, keys lower-cased; None if cut short or huge."""
    fields: dict[str, str] = {}
    size = 0
    while True:
        line = await reader.readline()
        size += len(line)
        if not line or size > MAX_LOGIN_BYTES:
            return None
        text = line.decode("utf-8", "replace").strip()
        if not text:
            if fields:
                return fields
            continue  # blank lines before the block are tolerated
        key, _, value = text.partition(":")
        fields[key.strip().lower()] = value.strip()


def check_login(state: SimulatorState, address: str, fields: dict[str, str]) -> bytes:
    """The answer to a login block, counted and applied to the lockout like an API login."""
    config, now, counts = state.config, state.now(), state.stats.live
    if state.lockout.is_locked(address, now):
        counts["report_logins_locked"] += 1
        return LOCKED
    good = (
        fields.get("action", "").lower() == "login"
        and fields.get("username") == config.username
        and fields.get("secret") == config.password
    )
    if not good:
        counts["report_logins_failed"] += 1
        state.lockout.record_failure(address, now, config.lockout_threshold, config.lockout_seconds)
        return REFUSED
    state.lockout.record_success(address)
    counts["report_logins_succeeded"] += 1
    return ACCEPTED


class ReportServer:
    """The PBX's TCP report port for one simulator: ``start``, ``port``, ``stop``."""

    def __init__(self, state: SimulatorState, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state, self.host, self.port = state, host, port
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen; ``port`` is the real one afterwards (0 asks for an ephemeral port)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, family=family, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, close every connection, and wait for the handlers."""
        if self._server is None:
            return
        self._server.close()
        # Closing the sockets ends every handler by itself (cancelling them would make
        # asyncio log each cancelled task).
        for writer in list(self._writers):
            writer.close()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5)
        await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._writers.add(writer)
        peer = writer.get_extra_info("peername")
        address = peer[0] if peer else "unknown"
        hub = self.state.reports
        connection = _Connection(writer)
        self.state.stats.live["report_connections"] += 1
        try:
            if self.state.now() < hub.refuse_until:
                self.state.stats.live["report_refused"] += 1
                return  # the channel is down: closed on arrival, before any login
            try:
                fields = await asyncio.wait_for(read_login_block(reader), LOGIN_TIMEOUT_SECONDS)
            except (TimeoutError, ConnectionError, ValueError):
                fields = None
            if fields is None:
                return  # nothing that could be a login: closed, not counted as a failure
            answer = check_login(self.state, address, fields)
            writer.write(answer)
            await writer.drain()
            if answer is not ACCEPTED:
                return
            hub.connections.add(connection)
            # Events only from here; read (and ignore) until the client or a drop closes it.
            while not writer.is_closing() and await reader.read(4096):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            hub.connections.discard(connection)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._writers.discard(writer)
            if task is not None:
                self._handlers.discard(task)
