"""The gateway's own subcommands: ``serve``, ``demo`` and ``export-schema``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

import uvicorn

from gateway.app import create_app
from gateway.errors import ConfigError
from gateway.schema import build_schema
from gateway.settings import Settings


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``serve`` and ``export-schema``."""
    serve = subparsers.add_parser(
        "serve",
        help="run the gateway against a real PBX (settings from the environment)",
        description="Run the gateway. Settings come from environment variables; see README.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    serve.set_defaults(handler=run_serve)

    export = subparsers.add_parser(
        "export-schema", help="print the GraphQL schema (SDL), as in schema.graphql"
    )
    export.set_defaults(handler=run_export_schema)


def run_serve(args: argparse.Namespace) -> int:
    """Read settings, then serve until interrupted; a bad setting is one line on stderr."""
    try:
        settings = Settings.from_environ(os.environ)
    except ConfigError as exc:
        print(f"pbx-gateway: configuration error: {exc.message}", file=sys.stderr)
        return 2
    logging.basicConfig(level=os.environ.get("GATEWAY_LOG_LEVEL", "INFO").upper())
    # On SIGTERM uvicorn stops accepting, lets in-flight requests finish within the
    # grace period, then runs the lifespan's shutdown, which logs out of the PBX.
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level="info",
        timeout_graceful_shutdown=settings.shutdown_grace,
    )
    return 0


def run_export_schema(args: argparse.Namespace) -> int:
    """Print the schema's SDL with a trailing newline."""
    print(build_schema().as_str())
    return 0
