"""The ``pbx-gateway`` command: one subcommand per job.

Each subcommand lives beside the code it runs and contributes itself through a
``register(subparsers)`` function, so this module only assembles them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from gateway import __version__, commands, demo
from gateway.doctor import command as doctor_command
from gateway.simulator import command as simulator_command


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="pbx-gateway",
        description="GraphQL gateway in front of Yeastar S-Series IP PBXs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.register(subparsers)
    demo.register(subparsers)
    doctor_command.register(subparsers)
    simulator_command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the subcommand named in ``argv`` and return its exit status."""
    args = build_parser().parse_args(argv)
    status: int = args.handler(args)
    return status
