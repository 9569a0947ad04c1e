"""The ``pbx-gateway doctor`` subcommand: arguments, settings, one run, the exit status.

Exit status 0 when nothing is wrong, 1 when a check found a problem, 2 for bad usage (a
missing or malformed setting, said in one line on stderr before anything is sent); 130 when
interrupted (after the logout).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from gateway.doctor.options import options_from
from gateway.doctor.probes import MAX_PBX_CALLS, diagnose
from gateway.doctor.report import render_json, render_table
from gateway.errors import ConfigError


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``doctor``."""
    doctor = subparsers.add_parser(
        "doctor",
        help="check a real PBX before going live (read-only, one login, never retried)",
        description=(
            "Check the PBX that `serve` would use, with the same settings (PBX_URL, "
            "PBX_USERNAME, the password variables, PBX_VERIFY_TLS, PBX_TIMEOUT); a flag "
            "replaces its variable. Read-only and lockout-safe: one login attempt, never "
            f"retried, at most {MAX_PBX_CALLS} API calls, and a logout at the end. Prints a "
            "table of checks and the settings to use; exit status 0 when nothing is wrong, "
            "1 on a problem, 2 on bad usage."
        ),
    )
    doctor.add_argument("--url", help="the PBX's address instead of PBX_URL")
    doctor.add_argument("--username", help="the API user instead of PBX_USERNAME")
    doctor.add_argument(
        "--password-file",
        metavar="PATH",
        help="a file holding the API password, instead of the PBX_PASSWORD* variables",
    )
    doctor.add_argument(
        "--verify-tls",
        metavar="true|false|CA_FILE",
        help="instead of PBX_VERIFY_TLS: verify the certificate, skip it, or trust this CA file",
    )
    doctor.add_argument("--timeout", metavar="SECONDS", help="instead of PBX_TIMEOUT")
    doctor.add_argument(
        "--no-token-probe",
        action="store_true",
        help="skip the second login that finds out whether the PBX keeps one token per user",
    )
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.set_defaults(handler=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    """Read the settings, run every check, print the report; the exit status."""
    try:
        options = options_from(os.environ, args)
    except ConfigError as exc:
        print(f"pbx-gateway doctor: {exc.message}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(diagnose(options))
    except KeyboardInterrupt:  # the run's own finally has logged out of any token by now
        print("pbx-gateway doctor: interrupted", file=sys.stderr)
        return 130
    print(render_json(report) if args.json else render_table(report))
    return report.exit_code
