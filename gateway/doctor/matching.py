"""Which simulator firmware profiles behave like the device doctor just probed.

Each profile in ``gateway.simulator.profiles`` is one reading of the PBX documents. Doctor's
findings are compared with each profile on what the probes could observe (room fields, the
answer to an unknown number, the heartbeat form, one token per user, a rejected login's errno,
which live-conference endpoints answer);
what they cannot observe (a timed-out token's errno takes 30 idle minutes) is left out, so
several profiles may match. The names tell a user which ``pbx-gateway simulator --profile``
reproduces their device, and let the suite prove doctor tells every profile apart.
"""

from __future__ import annotations

from gateway.doctor.report import Findings
from gateway.simulator.config import SimulatorConfig
from gateway.simulator.live_endpoints import endpoint_presence
from gateway.simulator.profiles import PROFILES


def consistent_profiles(findings: Findings) -> list[str]:
    """The names of the profiles that nothing in ``findings`` contradicts, in table order."""
    return [name for name, profile in PROFILES.items() if _consistent(findings, profile.config())]


def _consistent(findings: Findings, config: SimulatorConfig) -> bool:
    if findings.login == "rejected" and findings.login_errno != config.login_failure_errno:
        return False
    if findings.fields_absent is not None:
        absent = set(findings.fields_absent) | set(findings.fields_partial or ())
        if absent != config.fields_left_out():
            return False
    if findings.unknown_numbers is not None:
        if findings.unknown_numbers != config.unknown_numbers:
            return False
        if findings.unknown_numbers == "failed" and findings.unknown_errno != config.unknown_errno:
            return False
    if findings.heartbeat is not None:
        ipaddr_required = findings.heartbeat.get("ipaddr", False) and not findings.heartbeat.get(
            "{}", False
        )
        if ipaddr_required != config.heartbeat_requires_ipaddr:
            return False
    if findings.endpoints is not None:
        expected = endpoint_presence(config)
        if any(
            present is not None and name in expected and present != expected[name]
            for name, present in findings.endpoints.items()
        ):
            return False
    return findings.single_token is None or findings.single_token == (
        config.new_login_kills_old_tokens
    )
