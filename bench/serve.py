"""The child-process entry of every target: ``python -m bench.serve KIND --port P ...``.

``simulator`` runs ``SimulatorServer``; ``gateway``, ``naive`` and ``limit`` run through
``uvicorn.run`` with an app factory, so ``--workers N`` works the way an operator would
use it and every target gets the same server, loop and HTTP parser. The harness passes
what varies through the environment:

- ``BENCH_PBX_URL`` and ``BENCH_SETTINGS`` (JSON: ``Settings`` fields to override in
  ``demo_settings``; empty for the shipped defaults) for the gateway and the naive app,
  and ``BENCH_REPORT_PORT``, the simulator's TCP report port (the gateway's
  ``pbx_report_port``: its live source holds the report channel, as against a PBX);
  the gateway logs as ``serve`` does (``configure_logging``, JSON lines on stderr);
- ``BENCH_REDIS_URL`` and ``BENCH_REDIS_TOKEN_KEY`` (the fleet runs): the gateway's
  ``GATEWAY_REDIS_URL`` and ``GATEWAY_REDIS_TOKEN_KEY``, under names of the harness's own
  so a ``GATEWAY_REDIS_URL`` exported in the developer's shell never leaks into a run;
- ``BENCH_REPLIES`` (a file from ``limit.save_replies``) for the limit app;
- ``BENCH_INFO`` (a file): the factory writes the event loop class it runs on there;
- ``BENCH_READY_DIR`` (a directory): each gateway worker puts a file named by its pid
  there once its lifespan has started, so the harness can wait for all N workers (with
  Redis one login serves them all, so counting logins would not tell).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bench.limit import create_limit_app, load_replies
from bench.naive import create_naive_app
from gateway import serving
from gateway.app import create_app
from gateway.demo import demo_settings
from gateway.observability.logs import configure_logging
from gateway.secrets import Secret
from gateway.serving import LoopbackServer
from gateway.settings import Settings
from gateway.simulator import SimulatorConfig, SimulatorServer, generate_conferences

KINDS = ("simulator", "gateway", "naive", "limit")
T = TypeVar("T")


def with_overrides(
    settings: T, overrides: Mapping[str, Any], prefix: str = ""
) -> tuple[T, list[str]]:
    """``settings`` with ``overrides`` applied (a nested dict for a nested dataclass), and
    the dotted names of overrides this version of the settings has no field for."""
    changes: dict[str, Any] = {}
    ignored: list[str] = []
    names = {f.name for f in dataclasses.fields(settings)}  # type: ignore[arg-type]
    for key, value in overrides.items():
        if key not in names:
            ignored.append(prefix + key)
            continue
        current = getattr(settings, key)
        if isinstance(value, Mapping) and dataclasses.is_dataclass(current):
            changes[key], deeper = with_overrides(current, value, f"{prefix}{key}.")
            ignored.extend(deeper)
        else:
            changes[key] = value
    return dataclasses.replace(settings, **changes), ignored  # type: ignore[type-var]


def bench_settings() -> Settings:
    """``demo_settings`` for ``BENCH_PBX_URL`` (and the simulator's TCP report port,
    ``BENCH_REPORT_PORT``), with ``BENCH_SETTINGS`` applied."""
    overrides = json.loads(os.environ.get("BENCH_SETTINGS", "{}"))
    report_port = os.environ.get("BENCH_REPORT_PORT")
    shipped = (
        demo_settings(os.environ["BENCH_PBX_URL"], int(report_port))
        if report_port
        else demo_settings(os.environ["BENCH_PBX_URL"])
    )
    settings, ignored = with_overrides(shipped, overrides)
    redis_url = os.environ.get("BENCH_REDIS_URL")
    if redis_url:
        settings = dataclasses.replace(
            settings,
            redis_url=Secret(redis_url),
            redis_token_key=Secret(os.environ["BENCH_REDIS_TOKEN_KEY"]),
        )
    _note_runtime(ignored_settings=ignored, redis=bool(redis_url))
    return settings


def _note_runtime(**facts: Any) -> None:
    """Record the running event loop's class, as proof of which loop served the run."""
    path = os.environ.get("BENCH_INFO")
    if not path:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        name = "unknown"
    else:
        name = f"{type(loop).__module__}.{type(loop).__qualname__}"
    Path(path).write_text(json.dumps({"loop_class": name, **facts}))


def gateway_app() -> ASGIApp:
    """The real gateway (uvicorn factory), logging as ``pbx-gateway serve`` does: JSON
    lines at the settings' level (INFO) to stderr, which the harness sends to a file."""
    settings = bench_settings()
    configure_logging(settings.log_level, json_lines=True)
    return _announcing_start(create_app(settings))


def _announcing_start(app: ASGIApp) -> ASGIApp:
    """``app``, noting in ``BENCH_READY_DIR`` when its lifespan startup has completed."""
    folder = os.environ.get("BENCH_READY_DIR")
    if not folder:
        return app

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def announce(message: Message) -> None:
            await send(message)
            if message["type"] == "lifespan.startup.complete":
                _touch(Path(folder, str(os.getpid())))  # once per worker: blocking is fine

        await app(scope, receive, announce)

    return wrapped


def _touch(path: Path) -> None:
    path.touch()


async def _serve_as_shipped(port: int) -> None:
    """The gateway as ``pbx-gateway serve`` runs it (``gateway.commands.run_serve``): one
    process, uvicorn behind the connection guard, WebSockets on the guarded protocol with
    the shipped keep-alive, size and compression choices, the settings' limits."""
    settings = bench_settings()
    configure_logging(settings.log_level, json_lines=True)
    server = LoopbackServer(
        create_app(settings),
        "127.0.0.1",
        port,
        handle_signals=True,
        graceful_shutdown=settings.shutdown_grace,
        log_level=settings.log_level.lower(),
        trusted_proxies=settings.security.trusted_proxies,
        limits=settings.http_limits,
        live=settings.live_transport,
    )
    await server.start()  # returns once the lifespan has started
    folder = os.environ.get("BENCH_READY_DIR")
    if folder:
        _touch(Path(folder, str(os.getpid())))
    await server.wait()


def naive_app() -> Starlette:
    """The naive baseline (uvicorn factory)."""
    return create_naive_app(bench_settings())


def limit_app() -> Starlette:
    """The HTTP ceiling (uvicorn factory)."""
    _note_runtime()
    return create_limit_app(load_replies(Path(os.environ["BENCH_REPLIES"])))


async def _simulator(args: argparse.Namespace) -> None:
    config = SimulatorConfig(
        conferences=generate_conferences(args.rooms),
        latency=args.latency,
        jitter=args.jitter,
        serial=args.serial,
        events=not args.no_events,
        report_port=args.report_port,
    )
    async with SimulatorServer(config, port=args.port, handle_signals=True) as server:
        await server.wait()


def main(argv: list[str] | None = None) -> int:
    """Serve one target until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m bench.serve")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--loop", default="auto", help="uvicorn --loop (auto, asyncio, uvloop)")
    parser.add_argument("--http", default="auto", help="uvicorn --http (auto, h11, httptools)")
    parser.add_argument(
        "--as-shipped",
        action="store_true",
        help="gateway: serve as pbx-gateway serve does (connection guard, WebSockets)",
    )
    parser.add_argument("--rooms", type=int, default=100, help="simulator: generated rooms")
    parser.add_argument("--latency", type=float, default=0.02, help="simulator: seconds per call")
    parser.add_argument("--jitter", type=float, default=0.01, help="simulator: up to S more")
    parser.add_argument("--serial", action="store_true", help="simulator: one call at a time")
    parser.add_argument(
        "--report-port", type=int, default=0, help="simulator: TCP report port (0: any)"
    )
    parser.add_argument(
        "--no-events", action="store_true", help="simulator: send no ConferenceStatus events"
    )
    args = parser.parse_args(argv)
    if args.kind == "simulator":
        asyncio.run(_simulator(args))
        return 0
    if args.kind == "gateway" and args.as_shipped:
        if args.workers != 1:
            parser.error("--as-shipped serves one process (as pbx-gateway serve does)")
        serving.run(_serve_as_shipped(args.port))
        return 0
    uvicorn.run(
        f"bench.serve:{args.kind}_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        loop=args.loop,
        http=args.http,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
