"""The order of a doctor run: reach the PBX, log in once, probe the variant, log out.

Nothing is sent with credentials until the API has answered its own envelope; nothing after a
refused login; every token obtained is logged out of, even when a probe fails or the run is
interrupted. The total is small and bounded: at most 16 PBX calls (one credential-free
heartbeat, two logins, two conference queries, three heartbeats, five endpoint probes, two
logouts, and one TCP report-channel login) and at most one login that can fail before one
succeeded (the report login is tried only after the API login worked).
"""

from __future__ import annotations

import httpx

from gateway.doctor import events, login, reachability, variant
from gateway.doctor.matching import consistent_profiles
from gateway.doctor.options import DoctorOptions
from gateway.doctor.report import Report, Status
from gateway.doctor.wire import Wire
from gateway.pbx.client import build_http_client

MAX_PBX_CALLS = 16


async def diagnose(
    options: DoctorOptions, *, transport: httpx.AsyncBaseTransport | None = None
) -> Report:
    """Run every check against ``options.url`` and return the report (never raises for the PBX)."""
    report = Report(
        target=options.url.base_url,
        username=options.username,
        password_from=options.password_from,
    )
    reachability.check_url(options, report)
    url = options.url
    if not await reachability.resolve(url, options.timeout, report):
        return report
    local_ip = await reachability.connect(url, options.timeout, report)
    if local_ip is None:
        return report
    http = build_http_client(
        base_url=url.base_url, timeout=options.timeout, verify=options.verify, transport=transport
    )
    wire = Wire(http)
    try:
        await _with_api(wire, options, local_ip, report)
    finally:
        await http.aclose()
        report.pbx_calls, report.login_attempts = wire.calls, wire.logins
    if report.findings.api:
        _variant_row(report)
    return report


async def _with_api(wire: Wire, options: DoctorOptions, local_ip: str, report: Report) -> None:
    if not await reachability.probe_api(wire, options, report):
        return
    token = await login.login_once(wire, options, report)
    if token is None:
        return
    live = [token]
    try:
        numbers = await variant.probe_rooms(wire, token, report)
        await variant.probe_unknown_numbers(wire, token, numbers, report)
        heartbeat_body = await variant.probe_heartbeat(wire, token, local_ip, report)
        await variant.probe_endpoints(wire, token, report)
        await events.probe_events(wire, options, report)
        # Last: on a one-token-per-user PBX the second login ends the first token.
        live = await variant.probe_single_token(wire, options, token, heartbeat_body, report)
    finally:
        await login.logout(wire, live, report)


def _variant_row(report: Report) -> None:
    """Which simulator profiles match; a row only when the probes ran (the login worked)."""
    profiles = consistent_profiles(report.findings)
    report.findings.profiles = profiles
    if report.findings.login != "accepted":
        return
    if profiles:
        report.add(
            "variant",
            Status.INFO,
            f"behaves like the simulator profile(s) {', '.join(profiles)} (a timed-out "
            "token's errno is not probed: it takes 30 idle minutes)",
            f"try the gateway against it: pbx-gateway simulator --profile {profiles[0]}",
        )
    else:
        report.add(
            "variant",
            Status.WARN,
            "behaves like no simulator profile",
            "please report it with the output of `pbx-gateway doctor --json`",
        )
