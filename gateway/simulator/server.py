"""``SimulatorServer``: the simulator on a real loopback socket, for connection-level faults.

Runs uvicorn inside the caller's event loop on a socket bound here (so port 0 works and the port
is known before the first request). ``go_down`` closes the listening socket, so connections are
refused as by a rebooting PBX; ``come_up`` binds the same port again. Stalled calls are released
before uvicorn waits for open connections, so a stall never keeps the server from stopping.
``threaded.run_simulator_in_thread`` runs one on a background thread for sync code.

Beside the API port it opens the TCP report port (``report_port``; config ``report_port``, 0 for
an ephemeral one), delivers ConferenceStatus events on this loop, and runs the busy office
when ``config.busy_office`` asks (``start_busy_office`` starts one later). ``go_down`` closes
the API port only; ``state.drop_report_channel()`` breaks the report connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import uvicorn

from gateway.simulator.app import create_simulator_app
from gateway.simulator.busy_office import BusyOffice
from gateway.simulator.config import SimulatorConfig
from gateway.simulator.misbehave import quiet_uvicorn_about_drops
from gateway.simulator.report_tcp import ReportServer
from gateway.simulator.state import SimulatorState

_BACKLOG = 128


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only then; without it every
    # keep-alive answer waited ~40 ms for the client's delayed ACK.
    # Connection: close leaves server-side TIME_WAIT sockets; rebinding the port needs this.
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


class _Uvicorn(uvicorn.Server):
    """uvicorn that releases stalls before shutdown and may leave signals alone."""

    def __init__(self, config: uvicorn.Config, state: SimulatorState, signals: bool) -> None:
        super().__init__(config)
        self._state, self._signals = state, signals

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self._signals:  # embedded in tests: Ctrl-C belongs to the test runner
            yield
            return
        with super().capture_signals():
            yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._state.release_stalls()
        await super().shutdown(sockets)


class SimulatorServer:
    """An async context manager serving one simulated PBX over HTTP on ``host:port``."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        handle_signals: bool = False,
        log_config: dict[str, Any] | None = None,
    ) -> None:
        self.app = create_simulator_app(config)
        self.state: SimulatorState = self.app.state.simulator
        self.host, self.port = host, port
        self._signals, self._log_config = handle_signals, log_config
        self._server: _Uvicorn | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._down = False
        self._up_timer: asyncio.TimerHandle | None = None
        self._reopening: set[asyncio.Task[None]] = set()
        self.reports = ReportServer(self.state, host, self.state.config.report_port)
        self.busy_office: BusyOffice | None = None
        self._busy_task: asyncio.Task[None] | None = None

    @property
    def report_port(self) -> int:
        """The TCP report port (the real one once started, also when 0 was asked)."""
        return self.reports.port

    def start_busy_office(self, seed: int = 0, interval: float = 2.0) -> BusyOffice:
        """Start the seeded busy office on this server's loop (call from that loop)."""
        self.stop_busy_office()
        office = BusyOffice(self.state, seed, interval)
        self.busy_office = office
        self._busy_task = asyncio.get_running_loop().create_task(office.run())
        return office

    def stop_busy_office(self) -> None:
        """Stop the busy office, if one runs (people in rooms stay where they are)."""
        if self._busy_task is not None:
            self._busy_task.cancel()
        self._busy_task = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind, start uvicorn in the running loop, and return once it accepts connections."""
        quiet_uvicorn_about_drops()
        sock = _listening_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="on",
            log_level="warning",
            access_log=False,
            server_header=False,  # the app sends the PBX's own Server header
            log_config=self._log_config,
            timeout_graceful_shutdown=5,
        )
        self._loop = asyncio.get_running_loop()
        self._server = _Uvicorn(config, self.state, self._signals)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # startup failed: raise its error here
                raise RuntimeError("the simulator stopped during startup")
            await asyncio.sleep(0.005)
        self.state.down_handler = self.go_down
        self.state.up_handler = self.come_up
        await self.reports.start()
        self.state.reports.attach(self._loop)
        wanted = self.state.config
        if wanted.busy_office:
            self.start_busy_office(wanted.busy_seed, wanted.busy_interval)

    async def stop(self) -> None:
        """Release stalls, stop uvicorn and wait for it; safe to call twice."""
        if self._server is None or self._task is None:
            return
        if self._up_timer is not None:
            self._up_timer.cancel()
        busy = self._busy_task
        self.stop_busy_office()
        if busy is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await busy
        await self.state.reports.close()
        await self.reports.stop()
        self.state.release_stalls()
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        for task in list(self._reopening):
            task.cancel()
        self.state.down_handler = self.state.up_handler = None
        self._server = self._task = None

    async def wait(self) -> None:
        """Until the server stops (on a signal when ``handle_signals``)."""
        if self._task is not None:
            await self._task

    async def __aenter__(self) -> SimulatorServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _in_loop(self, action: Any) -> None:
        """Run ``action()`` on the server's loop and wait for it, from any thread."""
        loop = self._loop
        if loop is None or self._server is None:
            raise RuntimeError("the simulator server is not running")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            action()
            return

        async def call() -> None:
            action()

        asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=10)

    def go_down(self, seconds: float | None = None) -> None:
        """Refuse connections from now on, for ``seconds`` (None: until ``come_up``)."""
        self._in_loop(lambda: self._close_listeners(seconds))

    def come_up(self) -> None:
        """Accept connections again, on the same port; a no-op when not down."""
        self._in_loop(self._reopen)

    def _close_listeners(self, seconds: float | None) -> None:
        server, loop = self._server, self._loop
        if server is None or loop is None:
            return
        for listener in server.servers:
            listener.close()
        self._down = True
        if self._up_timer is not None:
            self._up_timer.cancel()
        self._up_timer = None if seconds is None else loop.call_later(seconds, self._reopen)

    def _reopen(self) -> None:
        if not self._down or self._server is None or self._loop is None:
            return
        self._down = False
        # Listening starts here, synchronously: a client connecting right after come_up()
        # waits in the backlog instead of being refused.
        sock = _listening_socket(self.host, self.port)
        task = self._loop.create_task(self._serve_on(sock))
        self._reopening.add(task)
        task.add_done_callback(self._reopening.discard)

    async def _serve_on(self, sock: socket.socket) -> None:
        server = self._server
        if server is None:  # stopped before the reopening ran
            sock.close()
            return
        config = server.config

        def protocol() -> asyncio.Protocol:
            # The same factory uvicorn's own startup builds.
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=server.server_state, app_state=server.lifespan.state
            )

        listener = await asyncio.get_running_loop().create_server(
            protocol, sock=sock, backlog=_BACKLOG
        )
        server.servers.append(listener)
