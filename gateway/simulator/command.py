"""The ``pbx-gateway simulator`` subcommand: one simulated PBX on a real port, for demos.

Every start-up switch maps to a ``SimulatorConfig`` field or to one ``SimulatorState`` admin
call; everything else can be switched while it runs through the ``/__simulator`` routes.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from uvicorn.config import LOGGING_CONFIG

from gateway.simulator.conference_data import (
    ConferenceDataError,
    generate_conferences,
    load_conferences,
)
from gateway.simulator.conference_rules import Conference
from gateway.simulator.config import (
    ABSENTABLE_FIELDS,
    ADMIN_PREFIX,
    API_PREFIX,
    DEMO_PASSWORD,
    DEMO_USERNAME,
    IDLE_ROOMS_MODES,
    MEMBER_CONTROLS_MODES,
    UNKNOWN_NUMBERS_MODES,
    SimulatorConfig,
    password_digest,
)
from gateway.simulator.profiles import (
    DEFAULT_PROFILE,
    PROFILES,
    matching_profile,
    profile_config,
)
from gateway.simulator.server import SimulatorServer


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``simulator`` subcommand."""
    parser = subparsers.add_parser(
        "simulator",
        help="run the Yeastar PBX simulator",
        description="A Yeastar S-Series PBX (API v2.0.0) over plain HTTP, with switchable faults.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    add("--port", type=int, default=8088, help="port (default: %(default)s, as the PBX)")
    add("--username", default=DEMO_USERNAME, help="API username (default: %(default)s)")
    add("--password", default=DEMO_PASSWORD, help="API password (default: the demo password)")
    rooms = parser.add_mutually_exclusive_group()
    rooms.add_argument("--conferences", type=int, metavar="N", help="generate N rooms from 6400")
    rooms.add_argument("--data", metavar="FILE", help="load rooms from a JSON file")
    add("--latency", type=float, default=0.0, metavar="S", help="added seconds per API call")
    add("--jitter", type=float, default=0.0, metavar="S", help="up to S more seconds, random")
    add("--serial", action="store_true", help="serve one API call at a time, like Boa")
    add("--token-ttl", type=float, default=1800.0, metavar="S", help="idle token lifetime")
    add("--lockout-threshold", type=int, default=5, metavar="N", help="failed logins to lock")
    add("--lockout-seconds", type=float, default=600.0, metavar="S", help="how long a lock lasts")
    add(
        "--profile",
        choices=tuple(PROFILES),
        default=DEFAULT_PROFILE,
        help="a firmware variant (default: %(default)s); the switches below override it",
    )
    add("--k2", action="store_true", default=None, help="answer like a K2: no mute, no prompt")
    add(
        "--absent-fields",
        metavar="F,F",
        type=_field_list,
        help=f"room fields this firmware leaves out ({', '.join(ABSENTABLE_FIELDS)})",
    )
    add("--unknown-numbers", choices=UNKNOWN_NUMBERS_MODES, help="how unknown numbers are answered")
    add("--unknown-errno", metavar="E", help="errno for --unknown-numbers=failed")
    add("--login-failure-errno", metavar="E", help="errno of a rejected login (default 20003)")
    add(
        "--heartbeat-requires-ipaddr",
        action="store_true",
        default=None,
        help="refuse a heartbeat without ipaddr",
    )
    add("--new-login-kills-old-tokens", action="store_true", default=None)
    live = parser.add_argument_group("live conferences")
    live.add_argument(
        "--report-port",
        type=int,
        default=0,
        metavar="P",
        help="TCP report port for ConferenceStatus events (default: 0, an ephemeral one)",
    )
    live.add_argument(
        "--transport", choices=("TCP", "HTTP"), help="report method: TCP (default) or HTTP push"
    )
    live.add_argument(
        "--member-controls", choices=MEMBER_CONTROLS_MODES, help="member control endpoint names"
    )
    live.add_argument(
        "--idle-rooms", choices=IDLE_ROOMS_MODES, help="query_in_session for an idle room"
    )
    live.add_argument(
        "--no-events", dest="events", action="store_false", default=None, help="send no events"
    )
    live.add_argument(
        "--busy-office", action="store_true", help="people join and leave rooms on a timer"
    )
    live.add_argument("--busy-seed", type=int, default=0, metavar="N", help="its random seed")
    live.add_argument(
        "--busy-interval", type=float, default=2.0, metavar="S", help="seconds between changes"
    )
    add("--fail-next", type=int, default=0, metavar="N", help="fail the next N API calls")
    add("--fail-errno", default="20010", metavar="E", help="errno for --fail-next")
    add("--fail-endpoint", default=None, metavar="EP", help="only fail calls to this endpoint")
    parser.set_defaults(handler=run)


def build_config(args: argparse.Namespace) -> SimulatorConfig:
    """The config the command line asks for (raises ValueError or ConferenceDataError)."""
    conferences: list[Conference] | None = None
    if args.data:
        conferences = load_conferences(args.data)
    elif args.conferences is not None:
        conferences = generate_conferences(args.conferences)
    # The profile first; a switch given on the command line overrides what it says.
    variant = {
        name: getattr(args, name)
        for name in (
            "k2",
            "absent_fields",
            "unknown_numbers",
            "unknown_errno",
            "login_failure_errno",
            "heartbeat_requires_ipaddr",
            "new_login_kills_old_tokens",
            "transport",
            "member_controls",
            "idle_rooms",
            "events",
        )
        if getattr(args, name) is not None
    }
    return profile_config(
        args.profile,
        username=args.username,
        password=args.password,
        conferences=conferences,
        token_ttl=args.token_ttl,
        lockout_threshold=args.lockout_threshold,
        lockout_seconds=args.lockout_seconds,
        latency=args.latency,
        jitter=args.jitter,
        serial=args.serial,
        report_port=args.report_port,
        busy_office=args.busy_office,
        busy_seed=args.busy_seed,
        busy_interval=args.busy_interval,
        **variant,
    )


def _field_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def banner(server: SimulatorServer) -> str:
    """What the command prints once listening."""
    config, url = server.state.config, server.base_url
    return "\n".join(
        [
            f"Yeastar S-Series PBX simulator (API v2.0.0, plain HTTP) listening on {url}",
            f"  firmware: {_describe_variant(config)}",
            f"  API:    {url}{API_PREFIX}/  ({len(server.state.book)} conferences)",
            f"  login:  username {config.username!r}, password {config.password!r}"
            f" (sent as MD5 {password_digest(config.password)})",
            f"  admin:  {url}{ADMIN_PREFIX}/  (counters at {ADMIN_PREFIX}/stats)",
            f"  events: {_describe_events(server)}",
            "Press Ctrl+C to stop.",
        ]
    )


def _describe_events(server: SimulatorServer) -> str:
    config = server.state.config
    if not config.events:
        where = "off"
    elif config.transport == "TCP":
        where = f"ConferenceStatus on TCP report port {server.report_port}"
    else:
        where = "ConferenceStatus by HTTP push to the login's port/url"
    if config.busy_office:
        where += f"; busy office (seed {config.busy_seed}, every {config.busy_interval:g} s)"
    return where


def _describe_variant(config: SimulatorConfig) -> str:
    profile = matching_profile(config)
    if profile is None:
        return "a custom variant (see --help for the switches)"
    return f"profile {profile.name}: {profile.summary}"


async def _serve(args: argparse.Namespace, config: SimulatorConfig) -> None:
    server = SimulatorServer(
        config, args.host, args.port, handle_signals=True, log_config=LOGGING_CONFIG
    )
    if args.fail_next:
        server.state.fail_next(args.fail_next, args.fail_errno, args.fail_endpoint)
    await server.start()
    print(banner(server), flush=True)
    await server.wait()


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; 2 on a bad option or data file, 1 if the port is unusable."""
    try:
        config = build_config(args)
    except (ValueError, ConferenceDataError) as exc:
        print(f"pbx-gateway simulator: {exc}")
        return 2
    try:
        asyncio.run(_serve(args, config))
    except OSError as exc:
        print(f"pbx-gateway simulator: cannot listen on {args.host}:{args.port}: {exc}")
        return 1
    except KeyboardInterrupt:
        pass
    return 0
