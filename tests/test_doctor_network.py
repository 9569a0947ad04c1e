"""``doctor`` against what a wrong ``PBX_URL`` meets: a path, a closed port, a web server that
is not the API, a redirect, a self-signed certificate, plain HTTP on a TLS port; and a firmware
that has the member-control endpoints. No credential is sent until the API has answered."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from starlette.responses import Response

from gateway.doctor.variant import CONFERENCE_ENDPOINTS
from gateway.simulator import DEMO_PASSWORD, SimulatorServer, create_simulator_app
from gateway.simulator.envelope import success
from gateway.simulator.state import SimulatorState
from tests.doctor_helpers import (
    not_a_pbx,
    redirecting,
    run_doctor,
    self_signed_certificate,
    statuses,
    with_endpoints,
    with_member_endpoints,
)
from tests.loopback import free_port, serve_app


async def test_doctor_url_with_a_path_is_reported_and_checked_without_it() -> None:
    """PBX_URL ending in /api/v2.0.0: a problem naming the fix; the probes use the address
    without it, so no call ever goes to /api/v2.0.0/api/v2.0.0/."""
    async with SimulatorServer() as sim:
        report = await run_doctor(sim.base_url + "/api/v2.0.0")
        calls = dict(sim.state.stats.calls)
    row = report.check("PBX_URL")
    assert row is not None and row.status.value == "PROBLEM"
    assert "/api/v2.0.0" in row.result and f"PBX_URL={sim.base_url}" in row.action
    assert report.recommended["PBX_URL"] == sim.base_url
    assert report.exit_code == 1 and [c.name for c in report.problems] == ["PBX_URL"]
    assert report.findings.login == "accepted"
    # Every probe reached a real endpoint: none went to /api/v2.0.0/api/v2.0.0/ ("unknown").
    assert "unknown" not in calls
    assert [calls[endpoint] for endpoint in CONFERENCE_ENDPOINTS] == [1] * len(CONFERENCE_ENDPOINTS)


async def test_doctor_closed_port_stops_before_any_call() -> None:
    """Nothing listening: the connect row says so and names the factory port; no API call."""
    report = await run_doctor(f"https://127.0.0.1:{free_port()}")
    row = report.check("connect")
    assert row is not None and row.status.value == "PROBLEM"
    assert "https://127.0.0.1:8088" in row.action
    assert (report.exit_code, report.pbx_calls, report.login_attempts) == (1, 0, 0)


async def test_doctor_unresolvable_host_is_a_dns_problem() -> None:
    """A host name that cannot resolve (the reserved .invalid domain): a dns problem, no call."""
    report = await run_doctor("https://pbx.invalid:8088")
    assert statuses(report)["dns"] == "PROBLEM"
    assert report.pbx_calls == 0


@pytest.mark.parametrize("status", [404, 200])
async def test_doctor_web_server_that_is_not_the_api(status: int) -> None:
    """An HTML page (404, or 200 as a web UI would) instead of the envelope: 'enable the API',
    and the password is never sent to it."""
    seen: list[str] = []
    async with serve_app(not_a_pbx(status, seen)) as url:
        report = await run_doctor(url)
    row = report.check("api")
    assert row is not None and row.status.value == "PROBLEM"
    assert "not the PBX API" in row.result
    assert "Settings > PBX > General > API" in row.action
    assert seen == ["POST /api/v2.0.0/heartbeat"]
    assert (report.exit_code, report.login_attempts) == (1, 0)


async def test_doctor_redirect_is_not_followed_and_its_target_recommended() -> None:
    """Port 80 redirecting to https://IP:8088: reported, not followed (one request), the target
    recommended as PBX_URL, and no login sent."""
    seen: list[str] = []
    app = redirecting("https://127.0.0.1:8088/api/v2.0.0/heartbeat", seen)
    async with serve_app(app) as url:
        report = await run_doctor(url)
    row = report.check("api")
    assert row is not None and row.status.value == "PROBLEM"
    assert "redirect" in row.result and "PBX_URL=https://127.0.0.1:8088" in row.action
    assert report.recommended["PBX_URL"] == "https://127.0.0.1:8088"
    assert seen == ["POST /api/v2.0.0/heartbeat"]
    assert report.login_attempts == 0


async def _over_tls(tmp_path: Path, *flags: str, **environ: str) -> tuple[Any, SimulatorState]:
    """Doctor against the simulator served over TLS with a self-signed certificate."""
    cert, key = self_signed_certificate(tmp_path)
    app = create_simulator_app()
    async with serve_app(app, certfile=cert, keyfile=key) as url:
        report = await run_doctor(url, *flags, **environ)
    state: SimulatorState = app.state.simulator
    return report, state


async def test_doctor_self_signed_certificate_names_the_setting(tmp_path: Path) -> None:
    """Verification on against the PBX's self-signed certificate: a TLS problem naming
    PBX_VERIFY_TLS (a CA file, or false), and no credential sent."""
    report, pbx = await _over_tls(tmp_path)
    row = report.check("tls")
    assert row is not None and row.status.value == "PROBLEM"
    assert "self-signed" in row.result
    assert "PBX_VERIFY_TLS=/path/to/pbx-cert.pem" in row.action
    assert "PBX_VERIFY_TLS=false" in row.action
    assert report.recommended["PBX_VERIFY_TLS"] == "/path/to/pbx-cert.pem"
    assert report.login_attempts == 0 and pbx.stats.calls["login"] == 0


async def test_doctor_self_signed_certificate_trusted_as_ca_file(tmp_path: Path) -> None:
    """The PBX's certificate as PBX_VERIFY_TLS's CA file: verified, every check passes."""
    report, pbx = await _over_tls(tmp_path, "--verify-tls", str(tmp_path / "pbx-cert.pem"))
    assert report.exit_code == 0, report.problems
    assert statuses(report)["tls"] == "ok"
    assert report.recommended["PBX_VERIFY_TLS"] == str(tmp_path / "pbx-cert.pem")
    assert pbx.stats.logins_succeeded == 2


async def test_doctor_verification_off_passes_with_a_warning(tmp_path: Path) -> None:
    """PBX_VERIFY_TLS=false: the checks pass, the tls row warns what that costs."""
    report, _ = await _over_tls(tmp_path, PBX_VERIFY_TLS="false")
    assert report.exit_code == 0, report.problems
    assert statuses(report)["tls"] == "warn"
    assert report.recommended["PBX_VERIFY_TLS"] == "false"


async def test_doctor_plain_http_to_a_tls_port_suggests_https(tmp_path: Path) -> None:
    """http:// to a port that speaks TLS: no usable answer, and the fix says https://."""
    cert, key = self_signed_certificate(tmp_path)
    async with serve_app(create_simulator_app(), certfile=cert, keyfile=key) as url:
        report = await run_doctor(url.replace("https://", "http://"))
    row = report.check("api")
    assert row is not None and row.status.value == "PROBLEM"
    assert "https://" in row.action
    assert report.login_attempts == 0


async def test_doctor_https_to_a_plain_http_port_is_a_tls_problem() -> None:
    """https:// to a plain-HTTP port: a TLS problem that says the port may not speak HTTPS."""
    async with SimulatorServer() as sim:
        report = await run_doctor(sim.base_url.replace("http://", "https://"))
        logins = sim.state.stats.calls["login"]
    row = report.check("tls")
    assert row is not None and row.status.value == "PROBLEM"
    assert "may not speak HTTPS" in row.action
    assert logins == 0


async def test_doctor_finds_member_endpoints_with_a_blank_number() -> None:
    """A firmware with the member controls: each found present through a blank-number call it
    refuses (10004), so nobody is kicked, muted or added."""
    app = create_simulator_app()
    bodies: list[Mapping[str, Any]] = []
    async with serve_app(with_member_endpoints(app, bodies)) as url:
        report = await run_doctor(url)
    assert report.findings.endpoints == dict.fromkeys(CONFERENCE_ENDPOINTS, True)
    assert bodies == [{"number": ""}] * len(CONFERENCE_ENDPOINTS)
    assert report.exit_code == 0
    assert "absent (10003): none" in (report.check("endpoints") or report.checks[0]).result


async def test_doctor_password_file_flag(tmp_path: Path) -> None:
    """--password-file replaces the password variables (a password never in a command line)."""
    secret = tmp_path / "pbx-password"
    secret.write_text(DEMO_PASSWORD + "\n")
    async with SimulatorServer() as sim:
        report = await run_doctor(
            sim.base_url, "--password-file", str(secret), PBX_PASSWORD="wrong"
        )
    assert report.findings.login == "accepted"
    assert report.password_from == "--password-file"


def _rooms(body: dict[str, Any]) -> Response:
    """Rooms that disagree: musiconhold in one only, a field no document lists in both; a
    batch answered with a room nobody asked for."""
    if body.get("number") == "all":
        return success(
            conferences=[
                {"number": "6400", "name": "A", "musiconhold": "yes", "vendorfield": "x"},
                {"number": "6401", "name": "B", "vendorfield": "x"},
            ]
        )
    return success(conferences=[{"number": "9999", "name": "C"}])


async def test_doctor_reports_fields_some_rooms_lack_and_odd_batches() -> None:
    """Fields in some rooms only and undocumented ones are named; a batch answered with a
    room nobody asked for is 'unexpected', matches no profile, and is a warning, not a pass."""
    async with serve_app(
        with_endpoints(create_simulator_app(), {"conference/query": _rooms})
    ) as url:
        report = await run_doctor(url)
    findings = report.findings
    assert findings.fields_partial == ["musiconhold"]
    assert findings.fields_extra == ["vendorfield"]
    assert "participantepassword" in (findings.fields_absent or [])
    assert findings.unknown_numbers == "unexpected"
    assert findings.profiles == []
    assert statuses(report)["unknown numbers"] == "warn"
    assert statuses(report)["variant"] == "warn"
    assert report.exit_code == 0


async def test_doctor_rooms_without_a_number_are_a_problem() -> None:
    """A listing whose rooms lack their number cannot be matched to requests: a problem."""

    def numberless(body: dict[str, Any]) -> Response:
        return success(conferences=[{"name": "A"}])

    async with serve_app(
        with_endpoints(create_simulator_app(), {"conference/query": numberless})
    ) as url:
        report = await run_doctor(url)
    assert statuses(report)["rooms"] == "PROBLEM"
    assert report.exit_code == 1
