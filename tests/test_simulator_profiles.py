"""Firmware profiles: each plays the device variant it names, and the command can pick one."""

from __future__ import annotations

import httpx
import pytest

from gateway.cli import build_parser
from gateway.simulator import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    PROFILES,
    SimulatorConfig,
    create_simulator_app,
    password_digest,
    profile_config,
)
from gateway.simulator.command import build_config
from gateway.simulator.profiles import matching_profile

LOGIN = {"username": DEMO_USERNAME, "password": password_digest(DEMO_PASSWORD)}


async def _pbx(config: SimulatorConfig) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_simulator_app(config))
    return httpx.AsyncClient(transport=transport, base_url="http://pbx.test")


async def _token(client: httpx.AsyncClient) -> str:
    token: str = (await client.post("/api/v2.0.0/login", json=LOGIN)).json()["token"]
    return token


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_config_is_valid_and_recognised(name: str) -> None:
    """Every profile builds a valid config that is recognised as that profile."""
    profile = matching_profile(profile_config(name))
    assert profile is not None and profile.name == name


def test_profile_config_unknown_name_lists_choices() -> None:
    """An unknown profile name says which names exist."""
    with pytest.raises(KeyError, match="s-series-v2"):
        profile_config("no-such-firmware")


@pytest.mark.parametrize(
    ("name", "missing"),
    [
        ("s-series-v2", set()),
        ("pre-2021", {"musiconhold", "mute", "prompt"}),
        ("draft-no-allowinvite", {"allowinvite"}),
        ("k2", {"mute", "prompt"}),
        ("field-worst", {"allowinvite", "musiconhold", "mute", "prompt"}),
    ],
)
async def test_profile_rooms_leave_out_the_fields_the_firmware_lacks(
    name: str, missing: set[str]
) -> None:
    """Rooms answered by conference/query lack exactly the profile's absent fields."""
    async with await _pbx(profile_config(name)) as client:
        token = await _token(client)
        answer = await client.post(
            f"/api/v2.0.0/conference/query?token={token}", json={"number": "all"}
        )
    rooms = answer.json()["conferences"]
    assert rooms and all(missing.isdisjoint(room) for room in rooms)
    assert all({"number", "name"} <= set(room) for room in rooms)


@pytest.mark.parametrize(("name", "errno"), [("s-series-v2", "20003"), ("login-30003", "30003")])
async def test_profile_rejected_login_errno(name: str, errno: str) -> None:
    """A wrong password fails with the profile's errno and still counts toward the lockout."""
    async with await _pbx(profile_config(name, lockout_threshold=2)) as client:
        bad = {**LOGIN, "password": password_digest("wrong")}
        first = (await client.post("/api/v2.0.0/login", json=bad)).json()
        await client.post("/api/v2.0.0/login", json=bad)
        locked = (await client.post("/api/v2.0.0/login", json=LOGIN)).json()
    assert (first["status"], first["errno"]) == ("Failed", errno)
    assert locked["errno"] == "20002"


async def test_profile_heartbeat_ipaddr_refuses_a_bare_heartbeat() -> None:
    """heartbeat-ipaddr answers 10004 to ``{}`` and Success once ipaddr is given."""
    async with await _pbx(profile_config("heartbeat-ipaddr")) as client:
        token = await _token(client)
        url = f"/api/v2.0.0/heartbeat?token={token}"
        bare = (await client.post(url, json={})).json()
        with_address = (await client.post(url, json={"ipaddr": "127.0.0.1"})).json()
    assert (bare["status"], bare["errno"]) == ("Failed", "10004")
    assert with_address == {"status": "Success"}


async def test_profile_unknown_failed_10110_fails_the_batch() -> None:
    """unknown-failed-10110 fails a batch holding an unknown number with errno 10110."""
    async with await _pbx(profile_config("unknown-failed-10110")) as client:
        token = await _token(client)
        answer = await client.post(
            f"/api/v2.0.0/conference/query?token={token}", json={"number": "6400,6999"}
        )
    assert answer.json() == {"status": "Failed", "errno": "10110"}


def test_simulator_command_profile_and_switch_override() -> None:
    """``--profile`` selects a variant; an explicit switch overrides the profile's value."""
    args = build_parser().parse_args(
        ["simulator", "--profile=field-worst", "--unknown-numbers=omit", "--absent-fields=mute"]
    )
    config = build_config(args)
    assert config.login_failure_errno == "30003"
    assert (config.unknown_numbers, config.absent_fields) == ("omit", ("mute",))
    assert matching_profile(config) is None


def test_absent_fields_refuses_number_and_name() -> None:
    """A firmware never leaves out number or name: the config refuses it."""
    with pytest.raises(ValueError, match="absent_fields"):
        SimulatorConfig(absent_fields=("name",))
