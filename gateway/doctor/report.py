"""What ``doctor`` found: rows of checks, the settings it recommends, the exit status.

A :class:`Check` is one row of the table: a name, a :class:`Status`, what was seen and what to
do. Rows are built from the probes' own sentences, field names and numbers: no value a room
carries (PINs, names) and no secret (the password, its MD5, a token) ever reaches a report, so
printing one is always safe. The same report prints as a table for people and as JSON for
scripts.
"""

from __future__ import annotations

import enum
import json
import textwrap
from dataclasses import asdict, dataclass, field
from typing import Any


class Status(enum.Enum):
    """How a row reads; only ``PROBLEM`` makes the exit status 1."""

    OK = "ok"
    INFO = "info"
    WARN = "warn"
    PROBLEM = "PROBLEM"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Check:
    """One row: ``action`` is empty when there is nothing to do."""

    name: str
    status: Status
    result: str
    action: str = ""


@dataclass
class Findings:
    """What the probes learnt about the device; ``None`` where a probe did not run."""

    api: bool | None = None
    login: str | None = None
    """``accepted``, ``rejected`` or ``locked-out``."""
    login_errno: str | None = None
    rooms: int | None = None
    fields_present: list[str] | None = None
    fields_absent: list[str] | None = None
    fields_partial: list[str] | None = None
    """Fields some rooms carry and others do not."""
    fields_extra: list[str] | None = None
    unknown_numbers: str | None = None
    """``omit``, ``empty``, ``missing``, ``failed`` or ``unexpected``."""
    unknown_errno: str | None = None
    heartbeat: dict[str, bool] | None = None
    """Which heartbeat body was accepted: ``{"ipaddr": ..., "{}": ...}``."""
    endpoints: dict[str, bool | None] | None = None
    """Per conference endpoint: present, absent (10003), or None when the answer said neither."""
    single_token: bool | None = None
    report_method: str | None = None
    """How the PBX sends events, from the login's answer (``TCP``, ``HTTP``)."""
    events: str | None = None
    """The report channel login: ``tcp`` (accepted), ``refused``, ``locked-out``,
    ``unreachable``; None when not tried."""
    profiles: list[str] | None = None
    """Simulator profiles that behave like this device, as far as the probes can tell."""


@dataclass
class Report:
    """Every row in order, plus the recommended settings and the call counts."""

    target: str
    username: str
    password_from: str
    checks: list[Check] = field(default_factory=list)
    recommended: dict[str, str] = field(default_factory=dict)
    findings: Findings = field(default_factory=Findings)
    pbx_calls: int = 0
    login_attempts: int = 0

    def add(self, name: str, status: Status, result: str, action: str = "") -> Check:
        """Append a row and return it."""
        check = Check(name, status, result, action)
        self.checks.append(check)
        return check

    def check(self, name: str) -> Check | None:
        """The first row called ``name``."""
        return next((c for c in self.checks if c.name == name), None)

    @property
    def problems(self) -> list[Check]:
        """The rows that make the exit status 1."""
        return [c for c in self.checks if c.status is Status.PROBLEM]

    @property
    def exit_code(self) -> int:
        """0 when nothing is wrong, 1 when something is (2 is for bad usage, before a report)."""
        return 1 if self.problems else 0


_WIDTHS = (16, 8, 46, 44)
_HEADINGS = ("CHECK", "STATUS", "RESULT", "WHAT TO DO")


def render_table(report: Report) -> str:
    """The report for people: a header, the table, the recommended settings, a verdict."""
    lines = [
        f"pbx-gateway doctor: {report.target} as {report.username!r} "
        f"(password from {report.password_from})",
        "",
        _row(_HEADINGS),
    ]
    for check in report.checks:
        lines.append(_row((check.name, check.status.value, check.result, check.action or "-")))
    lines += ["", "Recommended settings for `pbx-gateway serve`:"]
    lines += [f"  {name}={value}" for name, value in report.recommended.items()]
    problems = len(report.problems)
    verdict = "no problem found" if problems == 0 else f"{problems} problem(s) found"
    lines += [
        "",
        f"{report.pbx_calls} PBX API calls, {report.login_attempts} login attempt(s); "
        f"{verdict} (exit status {report.exit_code}).",
    ]
    return "\n".join(lines)


def _row(cells: tuple[str, str, str, str]) -> str:
    """One table row; long cells wrap inside their column."""
    wrapped = [
        textwrap.wrap(text, width) or [""] for text, width in zip(cells, _WIDTHS, strict=True)
    ]
    height = max(len(column) for column in wrapped)
    out = []
    for index in range(height):
        parts = [
            (column[index] if index < len(column) else "").ljust(width)
            for column, width in zip(wrapped, _WIDTHS, strict=True)
        ]
        out.append("  ".join(parts).rstrip())
    return "\n".join(out)


def render_json(report: Report) -> str:
    """The report for scripts: the same rows, findings and settings, as one JSON object."""
    body: dict[str, Any] = {
        "ok": report.exit_code == 0,
        "exit_code": report.exit_code,
        "target": report.target,
        "username": report.username,
        "password_from": report.password_from,
        "checks": [{**asdict(c), "status": c.status.value} for c in report.checks],
        "recommended": report.recommended,
        "findings": asdict(report.findings),
        "pbx_calls": report.pbx_calls,
        "login_attempts": report.login_attempts,
    }
    return json.dumps(body, indent=2)
