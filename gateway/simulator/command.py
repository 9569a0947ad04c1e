"""The ``pbx-gateway simulator`` subcommand (placeholder until the simulator lands)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``simulator`` subcommand."""
    parser = subparsers.add_parser("simulator", help="run the Yeastar PBX simulator")
    parser.set_defaults(handler=lambda args: 2)
