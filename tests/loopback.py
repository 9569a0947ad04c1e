"""Servers on loopback for tests: any ASGI app in the test's loop, and a free port.

:func:`serve_app` runs an app on :class:`gateway.serving.LoopbackServer`, the server
``pbx-gateway serve`` runs, so whatever a test serves (the gateway, the simulator, a web
server a PBX is not, a webhook receiver) goes through the same uvicorn set-up, port 0 and
the same shutdown; over TLS when given a certificate, as a PBX speaks. The real command in a
subprocess is :class:`tests.processes.GatewayProcess`; it listens on :func:`free_port`.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.types import ASGIApp

from gateway.serving import LoopbackServer


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released) for a subprocess to take."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def serve_app(
    app: ASGIApp, *, certfile: Path | None = None, keyfile: Path | None = None
) -> AsyncIterator[str]:
    """``app`` on a loopback port (TLS with ``certfile``); yields its base URL."""
    server = LoopbackServer(app, log_level="critical")
    if certfile is not None:
        # The gateway serves plain HTTP behind its proxy, so LoopbackServer has no TLS
        # option; a PBX answers HTTPS, and uvicorn reads these when the server starts.
        server._config.ssl_certfile, server._config.ssl_keyfile = certfile, keyfile
    async with server:
        yield server.base_url.replace("http://", "https://") if certfile else server.base_url
