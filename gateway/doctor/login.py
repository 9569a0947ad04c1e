"""The one login doctor makes, never retried, and the logout that ends every token it got.

Five failed logins lock the caller's address for ten minutes, and every integration on that
address with it (pbx-api.md, Login). So doctor sends the login once: any ``Failed`` answer,
whatever its errno (20003, K2's 30003, one never seen), is a rejection that is reported, not
retried. 20002 means the address is locked out already. The token is kept in memory only and
never printed.
"""

from __future__ import annotations

from gateway.doctor.options import DoctorOptions
from gateway.doctor.report import Report, Status
from gateway.doctor.wire import ReplyKind, Wire
from gateway.pbx.errnos import LOCKED_OUT, errno_meaning

_LOCKOUT_RULE = "each failed login counts toward the PBX's lockout (5 lock this address)"


async def login_once(wire: Wire, options: DoctorOptions, report: Report) -> str | None:
    """One login attempt and its row; the token, or None after any refusal."""
    body = {"username": options.username, "password": options.password.current_md5().reveal()}
    reply = await wire.post("login", body)
    findings = report.findings
    if reply.succeeded:
        token = reply.payload.get("token")
        if isinstance(token, str) and token:
            findings.login = "accepted"
            transport = reply.payload.get("transport")
            findings.report_method = transport.upper() if isinstance(transport, str) else None
            report.add("login", Status.OK, f"{options.username!r} accepted (token not shown)")
            return token
        report.add(
            "login",
            Status.PROBLEM,
            "answered Success without a token",
            "report it with this output: no firmware documented so far does this",
        )
        return None
    if reply.failed and reply.errno == LOCKED_OUT:
        findings.login, findings.login_errno = "locked-out", reply.errno
        report.add(
            "login",
            Status.PROBLEM,
            "refused: this machine's address is locked out after failed logins (errno 20002); "
            "every integration from this address is blocked with it",
            "an administrator unblocks the address in the PBX web interface (its blocked-IP "
            "list), or wait 10 minutes; run nothing that logs in before then",
        )
        return None
    if reply.failed:
        findings.login, findings.login_errno = "rejected", reply.errno
        report.add(
            "login",
            Status.PROBLEM,
            f"rejected ({reply.describe()}: {_meaning(reply.errno)}); not retried: {_LOCKOUT_RULE}",
            f"check PBX_USERNAME and the password ({options.password_from}): the API user's, "
            "set in Settings > PBX > General > API, not the web administrator's; fix them "
            "before anything tries again",
        )
        return None
    hint = "" if reply.kind is not ReplyKind.CONNECTION else " (the PBX may still count it)"
    report.add(
        "login",
        Status.PROBLEM,
        f"no PBX answer to the login: {reply.describe()}{hint}; not retried",
        "check the PBX's health and run doctor again once it answers",
    )
    return None


def _meaning(errno: str | None) -> str:
    if errno == "30003":
        return (
            "read as a rejected login: K2 firmware answers a bad password so; it can also "
            "mean the API process is not running"
        )
    return errno_meaning(errno)


async def logout(wire: Wire, tokens: list[str], report: Report) -> None:
    """End every token doctor holds, so none lingers for 30 minutes on the PBX."""
    refused = []
    for token in tokens:
        reply = await wire.post("logout", None, token=token)
        if not reply.succeeded:
            refused.append(reply.describe())
    if refused:
        report.add(
            "logout",
            Status.WARN,
            f"logout answered {', '.join(refused)}",
            "nothing: a token left behind expires by itself after 30 idle minutes",
        )
    else:
        report.add("logout", Status.OK, f"logged out ({len(tokens)} token(s) ended)")
