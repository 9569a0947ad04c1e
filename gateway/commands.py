"""The gateway's own subcommands: ``serve``, ``demo`` and ``export-schema``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from gateway import serving
from gateway.app import create_app
from gateway.errors import ConfigError
from gateway.observability.logs import configure_logging
from gateway.schema import build_schema
from gateway.security.api_keys import hash_key, new_key
from gateway.security.identity import ALL_SCOPES, READ
from gateway.serving import CannotListen, LoopbackServer
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

    key = subparsers.add_parser(
        "api-key",
        help="make a new client API key and print its keys-file entry",
        description=(
            "Print a new random API key (give it to the client) and the JSON entry holding "
            'only its SHA-256 (add it to GATEWAY_API_KEYS_FILE\'s "keys" list).'
        ),
    )
    key.add_argument("--name", required=True, help="who holds the key, e.g. wallboard")
    key.add_argument(
        "--scope",
        action="append",
        choices=sorted(ALL_SCOPES),
        default=None,
        help=f"a scope to grant (repeatable; default {READ})",
    )
    key.set_defaults(handler=run_api_key)

    token_key = subparsers.add_parser(
        "token-key",
        help="print a new key for GATEWAY_REDIS_TOKEN_KEY (encrypts the shared PBX token)",
    )
    token_key.set_defaults(handler=run_token_key)

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
    configure_logging(settings.log_level, json_lines=True)
    if settings.security.auth == "none":
        logging.getLogger("gateway").warning(
            "GATEWAY_AUTH=none: clients are not authenticated; anonymous callers get %s",
            ", ".join(sorted(settings.security.anonymous_scopes)) or "no scope",
        )
    # On SIGTERM uvicorn stops accepting, lets in-flight requests finish within the
    # grace period, then runs the lifespan's shutdown, which logs out of the PBX.
    server = LoopbackServer(
        create_app(settings),
        args.host,
        args.port,
        handle_signals=True,
        graceful_shutdown=settings.shutdown_grace,
        log_level=settings.log_level.lower(),
        trusted_proxies=settings.security.trusted_proxies,
        limits=settings.http_limits,
        live=settings.live_transport,
    )

    async def main() -> None:
        await server.start()
        logging.getLogger("gateway").info("listening on %s", server.base_url)
        await server.wait()

    try:
        serving.run(main())
    except CannotListen as exc:  # a busy port is a setting to change, not a crash
        print(f"pbx-gateway: {exc.message}", file=sys.stderr)
        return 1
    return 0


def run_api_key(args: argparse.Namespace) -> int:
    """Print a new key and its keys-file entry."""
    key = new_key()
    entry = {"name": args.name, "sha256": hash_key(key), "scopes": args.scope or [READ]}
    print(f"API key for {args.name} (shown once; the gateway stores only its hash):\n  {key}")
    print(f"Keys-file entry:\n  {json.dumps(entry)}")
    return 0


def run_token_key(args: argparse.Namespace) -> int:
    """Print a fresh Fernet key."""
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())
    return 0


def run_export_schema(args: argparse.Namespace) -> int:
    """Print the schema's SDL with a trailing newline."""
    print(build_schema().as_str())
    return 0
