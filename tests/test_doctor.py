"""``pbx-gateway doctor`` against the real simulator: every firmware profile, login safety,
the call budget, the command line, and no secret in any output."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from gateway.cli import main
from gateway.doctor.options import parse_pbx_url
from gateway.doctor.probes import MAX_PBX_CALLS
from gateway.doctor.variant import CONFERENCE_ENDPOINTS, pick_unknown
from gateway.errors import ConfigError
from gateway.simulator import (
    DEMO_PASSWORD,
    PROFILES,
    SimulatorServer,
    password_digest,
    profile_config,
    run_simulator_in_thread,
)
from tests.doctor_helpers import run_doctor, statuses

SAME_AS_DEFAULT = ["s-series-v2", "login-30003", "expired-20004"]
ALL_FOUR = ["allowinvite", "musiconhold", "mute", "prompt"]

# profile: (fields absent, unknown-number answer, its errno, {} heartbeat accepted,
#           one token per user, the profiles doctor finds it consistent with)
EXPECTED: dict[str, tuple[list[str], str, str | None, bool, bool, list[str]]] = {
    "s-series-v2": ([], "omit", None, True, False, SAME_AS_DEFAULT),
    "pre-2021": (["musiconhold", "mute", "prompt"], "omit", None, True, False, ["pre-2021"]),
    "draft-no-allowinvite": (["allowinvite"], "omit", None, True, False, ["draft-no-allowinvite"]),
    "k2": (["mute", "prompt"], "omit", None, True, False, ["k2"]),
    "unknown-empty": ([], "empty", None, True, False, ["unknown-empty"]),
    "unknown-missing": ([], "missing", None, True, False, ["unknown-missing"]),
    "unknown-failed-10110": ([], "failed", "10110", True, False, ["unknown-failed-10110"]),
    "login-30003": ([], "omit", None, True, False, SAME_AS_DEFAULT),
    "heartbeat-ipaddr": ([], "omit", None, False, False, ["heartbeat-ipaddr"]),
    "single-token": ([], "omit", None, True, True, ["single-token"]),
    "expired-20004": ([], "omit", None, True, False, SAME_AS_DEFAULT),
    "no-live": ([], "omit", None, True, False, ["no-live"]),
    "k2-controls": ([], "omit", None, True, False, ["k2-controls"]),
    "field-worst": (ALL_FOUR, "empty", None, False, True, ["field-worst"]),
}
# The live endpoints doctor finds: all five, none (no-live), or K2's naming (k2-controls, whose
# mute and unmute are conference/mute and conference/unmute, so the S-Series names are absent).
ALL_LIVE = dict.fromkeys(CONFERENCE_ENDPOINTS, True)
EXPECTED_ENDPOINTS: dict[str, dict[str, bool]] = {
    "no-live": dict.fromkeys(CONFERENCE_ENDPOINTS, False),
    "k2-controls": {
        **ALL_LIVE,
        "conference/mute_member": False,
        "conference/unmute_member": False,
    },
}


def test_doctor_expectations_cover_every_profile() -> None:
    """The per-profile expectations below name every firmware profile the simulator has."""
    assert sorted(EXPECTED) == sorted(PROFILES)


@pytest.mark.parametrize("name", list(PROFILES))
async def test_doctor_tells_each_firmware_profile(name: str) -> None:
    """Against each profile doctor reports its fields, unknown-number answer, heartbeat form,
    endpoints and token rule, passes, and leaves no token behind in a bounded number of calls."""
    absent, unknown, errno, bare_heartbeat, single_token, matches = EXPECTED[name]
    config = profile_config(name)
    async with SimulatorServer(config) as sim:
        report = await run_doctor(sim.base_url, PBX_REPORT_PORT=str(sim.report_port))
        stats = sim.state.stats
        live = sim.state.tokens.live_count(sim.state.now(), config.token_ttl)
    findings = report.findings
    assert report.exit_code == 0, report.problems
    assert findings.login == "accepted"
    assert findings.fields_absent == absent
    assert findings.fields_partial == []
    assert (findings.unknown_numbers, findings.unknown_errno) == (unknown, errno)
    assert findings.heartbeat == {"ipaddr": True, "{}": bare_heartbeat}
    assert findings.endpoints == EXPECTED_ENDPOINTS.get(name, ALL_LIVE)
    assert findings.single_token is single_token
    assert findings.profiles == matches
    assert (stats.logins_succeeded, stats.logins_failed, live) == (2, 0, 0)
    assert stats.query_numbers == ["all", "6400,6412"]
    # The report channel: the method from the login's answer, and one TCP report login.
    assert (findings.report_method, findings.events) == ("TCP", "tcp")
    assert statuses(report)["live events"] == "ok"
    assert (stats.live["report_logins_succeeded"], stats.live["report_logins_failed"]) == (1, 0)
    assert report.recommended["PBX_REPORT_PORT"] == str(sim.report_port)
    assert sum(stats.calls.values()) + 1 == report.pbx_calls == (15 if single_token else 16)
    assert report.pbx_calls <= MAX_PBX_CALLS


@pytest.mark.parametrize("name", list(PROFILES))
async def test_doctor_wrong_password_makes_one_attempt(name: str) -> None:
    """A wrong password under every profile: exit 1, the profile's errno, ONE failed login, no
    retry, and nothing sent after it."""
    config = profile_config(name)
    async with SimulatorServer(config) as sim:
        report = await run_doctor(sim.base_url, PBX_PASSWORD="not-the-password")
        stats = sim.state.stats
    assert report.exit_code == 1
    assert statuses(report)["login"] == "PROBLEM"
    assert (report.findings.login, report.findings.login_errno) == (
        "rejected",
        config.login_failure_errno,
    )
    assert (stats.logins_failed, stats.logins_succeeded) == (1, 0)
    assert dict(stats.calls) == {"heartbeat": 1, "login": 1}
    assert report.login_attempts == 1
    assert stats.live["report_connections"] == 0  # no report login after a refused API login
    assert report.check("live events") is None
    login = report.check("login")
    assert login is not None and "not retried" in login.result
    assert name in (report.findings.profiles or [])


async def test_doctor_login_30003_is_reported_as_a_rejected_login() -> None:
    """K2's errno 30003 for a bad password is read as a rejection, said so, and not retried."""
    async with SimulatorServer(profile_config("login-30003")) as sim:
        report = await run_doctor(sim.base_url, PBX_PASSWORD="wrong")
        failures = sim.state.stats.logins_failed
    login = report.check("login")
    assert login is not None and "errno 30003" in login.result
    assert "K2" in login.result
    assert failures == 1
    assert report.findings.profiles == ["login-30003", "field-worst"]


async def test_doctor_locked_out_address_says_how_to_unblock() -> None:
    """An address the PBX has locked: 20002 reported with how to unblock, and no new failure."""
    async with SimulatorServer(profile_config("s-series-v2", lockout_threshold=1)) as sim:
        async with httpx.AsyncClient(base_url=sim.base_url) as pbx:
            bad = {"username": "api", "password": password_digest("wrong")}
            await pbx.post("/api/v2.0.0/login", json=bad)
        report = await run_doctor(sim.base_url)
        stats = sim.state.stats
    login = report.check("login")
    assert report.exit_code == 1
    assert login is not None and "20002" in login.result
    assert "unblock" in login.action and "10 minutes" in login.action
    assert report.findings.login == "locked-out"
    assert (stats.logins_locked, stats.logins_failed) == (1, 1)  # the failure is the setup's


async def test_doctor_login_answered_by_a_web_page_is_not_retried() -> None:
    """A login answered with HTML instead of the envelope: one attempt, a problem, no probes."""
    async with SimulatorServer() as sim:
        sim.state.garbage_next(1, "html", "login")
        report = await run_doctor(sim.base_url)
        calls = dict(sim.state.stats.calls)
    assert report.exit_code == 1
    assert statuses(report)["login"] == "PROBLEM"
    assert calls == {"heartbeat": 1, "login": 1}


async def test_doctor_no_token_probe_makes_one_login() -> None:
    """--no-token-probe skips the second login: one login, one logout, 13 calls (one the
    report channel's login)."""
    async with SimulatorServer(profile_config("single-token")) as sim:
        report = await run_doctor(
            sim.base_url, "--no-token-probe", PBX_REPORT_PORT=str(sim.report_port)
        )
        stats = sim.state.stats
    assert statuses(report)["tokens"] == "skipped"
    assert report.findings.single_token is None
    assert (stats.logins_succeeded, stats.logouts, report.pbx_calls) == (1, 1, 13)
    assert "single-token" in (report.findings.profiles or [])


async def test_doctor_without_rooms_says_what_it_cannot_see() -> None:
    """A PBX with no room: a warning to create one, the unknown-number probe skipped, exit 0."""
    async with SimulatorServer(profile_config("s-series-v2", conferences=[])) as sim:
        report = await run_doctor(sim.base_url)
        numbers = sim.state.stats.query_numbers
    assert report.exit_code == 0
    assert statuses(report)["rooms"] == "warn"
    assert statuses(report)["unknown numbers"] == "skipped"
    assert numbers == ["all"]


async def test_doctor_says_when_events_come_by_http_push() -> None:
    """transport HTTP in the login's answer: said, and no report-channel login is tried."""
    async with SimulatorServer(profile_config("s-series-v2", transport="HTTP")) as sim:
        report = await run_doctor(sim.base_url, PBX_REPORT_PORT=str(sim.report_port))
        live = sim.state.stats.live
    assert report.findings.report_method == "HTTP"
    assert report.findings.events is None
    assert statuses(report)["live events"] == "info"
    assert live["report_connections"] == 0
    assert report.exit_code == 0


async def test_doctor_events_need_the_clear_password() -> None:
    """Only the MD5 configured: the TCP report login cannot be made; skipped, said why."""
    async with SimulatorServer() as sim:
        report = await run_doctor(
            sim.base_url,
            PBX_PASSWORD="",
            PBX_PASSWORD_MD5=password_digest(DEMO_PASSWORD),
            PBX_REPORT_PORT=str(sim.report_port),
        )
        live = sim.state.stats.live
    row = report.check("live events")
    assert row is not None and row.status.value == "skipped"
    assert "PBX_PASSWORD" in row.action
    assert live["report_connections"] == 0


async def test_doctor_events_on_a_closed_report_port_says_which_setting() -> None:
    """Nothing listens on PBX_REPORT_PORT: a warning naming the setting; still exit 0."""
    async with SimulatorServer() as sim:
        report = await run_doctor(sim.base_url, PBX_REPORT_PORT="1")
    row = report.check("live events")
    assert row is not None and row.status.value == "warn"
    assert "PBX_REPORT_PORT" in row.action
    assert report.findings.events == "unreachable"
    assert report.exit_code == 0


def test_pick_unknown_is_never_a_listed_number() -> None:
    """The unknown number follows the highest listed one and skips any listed number."""
    assert pick_unknown(["6400", "6401"]) == "6402"
    assert pick_unknown(["6400", "x1", "6402", "6401"]) == "6403"
    assert pick_unknown(["abc"]) == "6400"


def test_parse_pbx_url_keeps_what_follows_the_address() -> None:
    """A path, query or fragment is kept apart; the base is scheme://host:port only."""
    url = parse_pbx_url("PBX_URL", "HTTPS://192.168.5.150:8088/api/v2.0.0/")
    assert (url.base_url, url.extra) == ("https://192.168.5.150:8088", "/api/v2.0.0")
    assert url.port == 8088
    v6 = parse_pbx_url("PBX_URL", "http://[fd00::5]")
    assert (v6.port, v6.factory_https) == (80, "https://[fd00::5]:8088")
    with pytest.raises(ConfigError) as refused:
        parse_pbx_url("PBX_URL", "https://api:s3cret@pbx:8088")
    assert "s3cret" not in refused.value.message


def _doctor_cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
    password: str,
    *flags: str,
) -> tuple[int, str]:
    monkeypatch.setenv("PBX_URL", url)
    monkeypatch.setenv("PBX_USERNAME", "api")
    monkeypatch.setenv("PBX_PASSWORD", password)
    status = main(["doctor", *flags])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_doctor_output_never_holds_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Table and JSON, right and wrong password: no password, MD5 or issued token is printed."""
    issued: list[str] = []
    outputs: list[str] = []
    with run_simulator_in_thread(profile_config("field-worst")) as sim:
        issue = sim.state.tokens.issue

        def recording(username: str, now: float) -> str:
            token = issue(username, now)
            issued.append(token)
            return token

        monkeypatch.setattr(sim.state.tokens, "issue", recording)
        for password, flags in [
            (DEMO_PASSWORD, ()),
            (DEMO_PASSWORD, ("--json",)),
            ("wrong-Pa55", ()),
            ("wrong-Pa55", ("--json",)),
        ]:
            outputs.append(_doctor_cli(monkeypatch, capsys, sim.base_url, password, *flags)[1])
    secrets = [DEMO_PASSWORD, password_digest(DEMO_PASSWORD), "wrong-Pa55"]
    secrets += [password_digest("wrong-Pa55"), *issued]
    assert len(issued) == 4  # two runs with the right password, two logins each
    for output in outputs:
        assert "login" in output
        for secret in secrets:
            assert secret not in output
            assert secret.upper() not in output


def test_doctor_command_prints_table_and_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table has its headings and recommended settings; --json parses with the same rows."""
    with run_simulator_in_thread() as sim:
        status, table = _doctor_cli(monkeypatch, capsys, sim.base_url, DEMO_PASSWORD)
        json_status, text = _doctor_cli(monkeypatch, capsys, sim.base_url, DEMO_PASSWORD, "--json")
    assert (status, json_status) == (0, 0)
    assert "CHECK" in table and "WHAT TO DO" in table
    assert f"PBX_URL={sim.base_url}" in table
    assert "no problem found (exit status 0)" in table
    body: dict[str, Any] = json.loads(text)
    assert body["ok"] is True and body["exit_code"] == 0
    assert [c["name"] for c in body["checks"]][:6] == [
        "PBX_URL",
        "dns",
        "connect",
        "tls",
        "api",
        "login",
    ]
    assert body["findings"]["unknown_numbers"] == "omit"
    assert body["recommended"]["PBX_URL"] == sim.base_url


def test_doctor_command_wrong_password_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command exits 1 on a rejected login, after exactly one failed attempt."""
    with run_simulator_in_thread() as sim:
        status, output = _doctor_cli(monkeypatch, capsys, sim.base_url, "wrong")
        failed = sim.state.stats.logins_failed
    assert (status, failed) == (1, 1)
    assert "1 problem(s) found (exit status 1)" in output


@pytest.mark.parametrize(
    ("environ", "flags", "names"),
    [
        ({"PBX_USERNAME": ""}, (), "PBX_USERNAME"),
        ({"PBX_PASSWORD": ""}, (), "PBX_PASSWORD"),
        ({}, ("--url", "ftp://pbx"), "--url"),
        ({"PBX_URL": "https://api:s3cret@pbx:8088"}, (), "PBX_URL"),
        ({"PBX_VERIFY_TLS": "/no/such/ca.pem"}, (), "PBX_VERIFY_TLS"),
        ({}, ("--timeout", "soon"), "--timeout"),
        ({}, ("--password-file", "/no/such/file"), "--password-file"),
    ],
)
def test_doctor_bad_usage_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    environ: dict[str, str],
    flags: tuple[str, ...],
    names: str,
) -> None:
    """A missing or malformed setting: exit 2, one line naming it, no secret echoed, no call."""
    base = {"PBX_URL": "https://127.0.0.1:1", "PBX_USERNAME": "api", "PBX_PASSWORD": "s3cret"}
    for name, value in {**base, **environ}.items():
        monkeypatch.setenv(name, value)
    assert main(["doctor", *flags]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert names in captured.err and len(captured.err.strip().splitlines()) == 1
    assert "s3cret" not in captured.err
