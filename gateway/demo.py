"""``pbx-gateway demo``: the simulator and the gateway in one process, ready to query.

No configuration: the simulated PBX starts with its demo rooms and credentials, the
gateway is pointed at it, and GraphiQL opens at http://127.0.0.1:8000/graphql.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from gateway.app import create_app
from gateway.examples import WEB_EXAMPLE_URL, example_routes
from gateway.observability.logs import configure_logging
from gateway.secrets import Secret
from gateway.security.config import SecuritySettings
from gateway.security.identity import ALL_SCOPES
from gateway.serving import LoopbackServer
from gateway.settings import PasswordSource, Settings
from gateway.simulator import DEMO_PASSWORD, DEMO_USERNAME, SimulatorServer, password_digest

logger = logging.getLogger("gateway.demo")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="run the gateway with an embedded PBX simulator (no configuration needed)",
        description="The PBX simulator and the gateway in one process; GraphiQL ready.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="gateway address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="gateway port (default 8000)")
    parser.add_argument(
        "--pbx-port", type=int, default=8088, help="simulated PBX port (default 8088; 0 = any)"
    )
    parser.set_defaults(handler=run_demo)


def demo_settings(pbx_url: str, report_port: int = Settings.pbx_report_port) -> Settings:
    """Gateway settings for the embedded simulator with its demo credentials (and its TCP
    report port, where live changes come from)."""
    return Settings(
        pbx_url=pbx_url,
        pbx_username=DEMO_USERNAME,
        pbx_password=PasswordSource(
            md5=Secret(password_digest(DEMO_PASSWORD)), clear=Secret(DEMO_PASSWORD)
        ),
        pbx_report_port=report_port,
        # The demo's data is made up: anyone may read everything, PINs included.
        security=SecuritySettings(
            auth="none", anonymous_scopes=ALL_SCOPES, graphiql=True, introspection=True
        ),
    )


def run_demo(args: argparse.Namespace) -> int:
    """Serve both until Ctrl-C."""
    configure_logging("INFO", json_lines=False)
    try:
        asyncio.run(_serve(args.host, args.port, args.pbx_port))
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled; both have stopped
        pass
    except OSError as exc:
        print(
            f"pbx-gateway demo: cannot start: {exc}; is another demo already running? "
            "Try --port / --pbx-port"
        )
        return 1
    return 0


async def _serve(host: str, port: int, pbx_port: int) -> None:
    async with SimulatorServer(port=pbx_port) as pbx:
        gateway = LoopbackServer(
            create_app(demo_settings(pbx.base_url, pbx.report_port), extra_routes=example_routes()),
            host,
            port,
            handle_signals=True,
            log_level="info",
        )
        await gateway.start()
        print(
            f"\n  Simulated PBX:  {pbx.base_url}  (user {DEMO_USERNAME!r}, password "
            f"{DEMO_PASSWORD!r}; admin under {pbx.base_url}/__simulator/)\n"
            f"  GraphiQL:       {gateway.base_url}/graphql\n"
            f"  Web example:    {gateway.base_url}{WEB_EXAMPLE_URL}\n"
            f"  Try:            curl -s {gateway.base_url}/graphql -H 'content-type: "
            'application/json\' -d \'{"query":"{ conferences { number name } }"}\'\n'
            "  Client authentication is OFF in the demo (GATEWAY_AUTH=none, every scope, PINs\n"
            "  included): fine for its made-up rooms, never for a real PBX. Ctrl-C stops both.\n",
            flush=True,
        )
        await gateway.wait()
