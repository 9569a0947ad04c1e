"""The ``live events`` row: how this PBX sends events, and whether the gateway can get them.

The login's answer says the report method set on the PBX (``transport``: ``TCP`` or
``HTTP``; pbx-api.md, Events). For TCP, one login to the report port (``PBX_REPORT_PORT``)
finds out whether events can be received, with the clear password the TCP login needs. It
is tried only after the API login was accepted, so the credentials are known good and it
cannot push this address toward the lockout; it is never retried, and the connection is
closed at once (no event is waited for: whether the PBX sends any is only seen when a room
changes, which the gateway's reconciliation checks while it runs).
"""

from __future__ import annotations

from gateway.doctor.options import DoctorOptions
from gateway.doctor.report import Report, Status
from gateway.doctor.wire import Wire
from gateway.errors import PbxAuthError, PbxLockedOutError
from gateway.pbx.report_channel import ReportChannelError, open_report_channel

NAME = "live events"
_POLLING = "the gateway polls the watched rooms instead (GATEWAY_LIVE_POLL_INTERVAL)"


async def probe_events(wire: Wire, options: DoctorOptions, report: Report) -> None:
    """The ``live events`` row (call only after an accepted API login)."""
    transport = report.findings.report_method
    if transport == "HTTP":
        report.add(
            NAME,
            Status.INFO,
            "the PBX sends events by HTTP push (its API settings' report method): the gateway "
            "receives them on GATEWAY_LIVE_PUSH_PORT, and without it polls the watched rooms "
            "(not probed: doctor listens on no port)",
            "set GATEWAY_LIVE_PUSH_PORT to a port the PBX can reach on the gateway's host, or "
            "the report method to TCP",
        )
        return
    secret = options.password.current_clear()
    if secret is None:
        report.add(
            NAME,
            Status.SKIPPED,
            "not tried: the TCP report login sends the password in clear, and only its MD5 "
            f"is configured; {_POLLING}",
            "for events, give the password as PBX_PASSWORD or PBX_PASSWORD_FILE",
        )
        return
    port = options.report_port
    wire.calls += 1  # within doctor's call budget, and a login the PBX counts
    wire.logins += 1
    try:
        channel = await open_report_channel(
            options.url.host, port, options.username, secret, login_timeout=options.timeout
        )
    except PbxLockedOutError:
        report.findings.events = "locked-out"
        report.add(
            NAME,
            Status.WARN,
            f"the report login on port {port} answered IP locked; not retried; {_POLLING}",
            "an administrator unblocks the address in the PBX web interface",
        )
        return
    except PbxAuthError:
        report.findings.events = "refused"
        report.add(
            NAME,
            Status.WARN,
            f"the report login on port {port} was refused although the API login worked; "
            f"not retried; {_POLLING}",
            "report it with this output: the same credentials serve both logins",
        )
        return
    except ReportChannelError as exc:
        report.findings.events = "unreachable"
        report.add(
            NAME,
            Status.WARN,
            f"report port {port}: {exc.message}; {_POLLING}",
            "set PBX_REPORT_PORT to the TCP port on the PBX's API settings page",
        )
        return
    await channel.close()
    report.findings.events = "tcp"
    report.recommended["PBX_REPORT_PORT"] = str(port)
    method = "TCP" if transport == "TCP" else "TCP (the login answer did not say)"
    report.add(
        NAME,
        Status.OK,
        f"report method {method}; the report login on port {port} was accepted: the gateway "
        "receives ConferenceStatus events (GATEWAY_LIVE_SOURCE=auto)",
    )
