"""Serve an ASGI app with uvicorn inside the running event loop, on a socket bound here.

Binding the socket ourselves makes port 0 work (the port is known before the first
request), and running inside the caller's loop lets ``demo`` put the simulator and the
gateway in one process, and lets tests drive a real server over loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Coroutine, Iterator, Sequence
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import uvicorn

from gateway.http_guard import ConnectionGuard
from gateway.settings import HttpLimits, LiveTransportLimits
from gateway.ws_guard import GuardedWebSocketProtocol


class CannotListen(OSError):
    """The listening socket could not be bound; ``message`` says what to change."""

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror)
        where = f"{host}:{port}"
        if cause.errno == errno.EADDRINUSE:
            hint = f"port {port} is already in use (another gateway?); choose another with --port"
        else:
            hint = (
                f"{cause.strerror or cause}; check --host (an address of this machine) and --port"
            )
        self.message = f"cannot listen on {where}: {hint}"


@runtime_checkable
class CountsConnections(Protocol):
    """An app that reports its server's connections (:class:`gateway.app.GatewayApp`)."""

    def watch_connections(self, guard: ConnectionGuard) -> None: ...


@runtime_checkable
class EndsStreams(Protocol):
    """An app that ends its long-lived responses when shutdown begins
    (:meth:`gateway.app.GatewayApp.begin_shutdown`: live subscriptions complete)."""

    def begin_shutdown(self) -> None: ...


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, handle_signals: bool) -> None:
        super().__init__(config)
        self._handle_signals = handle_signals

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Before uvicorn waits for in-flight responses: a subscription streaming over HTTP
        # would otherwise hold the whole grace period, then be cut off instead of completed.
        app = self.config.app
        if isinstance(app, EndsStreams):
            app.begin_shutdown()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self._handle_signals:  # embedded: Ctrl-C belongs to whoever embeds us
            yield
            return
        with super().capture_signals():
            yield
            # uvicorn re-raises the signal it handled once it has stopped, so the process
            # would die by SIGTERM (exit 143). A handled stop is a clean stop: exit 0.
            self._captured_signals.clear()


class LoopbackServer:
    """An async context manager serving ``app`` on ``host:port`` until stopped.

    Every server is bounded (``limits``, the defaults when not given: see
    :mod:`gateway.http_guard`), and believes ``X-Forwarded-For`` only from
    ``trusted_proxies``: none by default, whatever uvicorn's own default.
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        handle_signals: bool = False,
        graceful_shutdown: int = 10,
        log_level: str = "warning",
        trusted_proxies: Sequence[str] = (),
        limits: HttpLimits | None = None,
        live: LiveTransportLimits | None = None,
    ) -> None:
        self.app, self.host, self.port = app, host, port
        self.guard = ConnectionGuard(limits or HttpLimits(), trusted_proxies)
        live = live or LiveTransportLimits()
        if isinstance(app, CountsConnections):  # the gateway's app: /metrics shows them
            app.watch_connections(self.guard)
        self._config = uvicorn.Config(
            app,
            lifespan="on",
            log_level=log_level,
            log_config=None,  # keep whatever logging the embedding program configured
            access_log=False,
            timeout_graceful_shutdown=graceful_shutdown,
            http=self.guard.protocol(),
            # Subscriptions over graphql-transport-ws (only /graphql accepts the upgrade):
            # the guarded protocol keeps the upgraded connection in the guard's counts.
            ws=GuardedWebSocketProtocol,
            ws_max_size=live.max_message_bytes,
            # No compression: a small compressed frame may inflate to the size limit, and
            # the CPU it costs is the client's choice, not ours.
            ws_per_message_deflate=False,
            # Frame-level pings find a peer that stopped reading (it answers no pong even
            # when the application's own pings cannot get through its full buffers).
            ws_ping_interval=live.keepalive,
            ws_ping_timeout=2 * live.keepalive,
            timeout_keep_alive=self.guard.limits.keep_alive_timeout,
            # X-Forwarded-For names the client (anonymous identity, rate-limit and
            # failed-auth budgets, logs), so it is believed only from the configured
            # proxies. uvicorn believes it from 127.0.0.1 (or $FORWARDED_ALLOW_IPS) unless
            # told otherwise: anything on loopback could choose its own address.
            proxy_headers=bool(trusted_proxies),
            forwarded_allow_ips=",".join(trusted_proxies) or "",
        )
        self._server = _Server(self._config, handle_signals)
        self._task: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind, start serving, and return once the app's lifespan has started."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only then; without it every
        # keep-alive answer waited ~40 ms for the client's delayed ACK.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise CannotListen(self.host, self.port, exc) from exc
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # start-up failed: raise its error here
                raise RuntimeError(f"the server on {self.base_url} stopped during start-up")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        """Stop as on SIGTERM: finish in-flight requests, run the lifespan's shutdown."""
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def wait(self) -> None:
        """Until the server stops (on a signal when ``handle_signals``)."""
        if self._task is not None:
            await self._task

    async def __aenter__(self) -> LoopbackServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop when it is installed (faster I/O), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)
