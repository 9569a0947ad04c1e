"""The busy office (seeded people coming and going, bounded) and the simulator command's live
switches."""

from __future__ import annotations

import asyncio

import pytest

from gateway.cli import build_parser
from gateway.simulator import SimulatorServer, SimulatorState, profile_config
from gateway.simulator.busy_office import MAX_PEOPLE, MAX_PER_ROOM, ROOMS, BusyOffice
from gateway.simulator.command import banner, build_config


def _room_members(state: SimulatorState) -> dict[str, list[str]]:
    return {s.number: [m.number for m in s.members] for s in state.live.sessions()}


def test_busy_office_same_seed_same_day() -> None:
    """The same seed from the same start makes the same changes in the same order and ends in
    the same rooms; another seed does not."""
    runs = []
    for seed in (7, 7, 8):
        state = SimulatorState()
        office = BusyOffice(state, seed=seed, interval=1.0)
        steps = [office.step() for _ in range(60)]
        runs.append((steps, _room_members(state)))
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0]
    assert any(step.startswith("leave") for step in runs[0][0])
    assert any(" inbound " in step for step in runs[0][0])


def test_busy_office_stays_bounded_and_makes_one_event_per_change() -> None:
    """Over 400 steps the office never holds more than its caps, uses only its first rooms, and
    each join or leave is exactly one ConferenceStatus."""
    state = SimulatorState()
    office = BusyOffice(state, seed=3, interval=1.0)
    first_rooms = {room["number"] for room in state.book.all()[:ROOMS]}
    changes = 0
    for _ in range(400):
        step = office.step()
        changes += step.startswith(("join", "leave"))
        assert state.live.member_count() <= MAX_PEOPLE
        assert all(len(s.members) <= MAX_PER_ROOM for s in state.live.sessions())
        assert {s.number for s in state.live.sessions()} <= first_rooms
    assert state.stats.live["events_generated"] == changes
    assert changes > 300


def test_busy_office_refuses_a_faster_rate() -> None:
    """An interval under 0.2 s is refused, by the script and by the config."""
    with pytest.raises(ValueError, match=r"interval must be >= 0\.2"):
        BusyOffice(SimulatorState(), interval=0.1)
    with pytest.raises(ValueError, match=r"busy_interval must be >= 0\.2"):
        profile_config("s-series-v2", busy_office=True, busy_interval=0.05)


async def test_busy_office_runs_on_a_timer_in_the_server() -> None:
    """``busy_office`` in the config starts the script with the server; people come and go
    without any admin call, and it stops with the server."""
    config = profile_config("s-series-v2", busy_office=True, busy_seed=1, busy_interval=0.2)
    async with SimulatorServer(config) as sim:
        for _ in range(100):
            if sim.state.stats.live["events_generated"] >= 2:
                break
            await asyncio.sleep(0.05)
        office = sim.busy_office
        assert office is not None and office.steps >= 2
    made = sim.state.stats.live["events_generated"]
    await asyncio.sleep(0.3)
    assert sim.state.stats.live["events_generated"] == made  # stopped with the server


def test_simulator_command_live_switches_reach_the_config() -> None:
    """The live switches land in SimulatorConfig; ``--profile no-live`` turns it all off."""
    argv = [
        "simulator",
        "--report-port=0",
        "--transport=HTTP",
        "--member-controls=k2",
        "--idle-rooms=failed",
        "--no-events",
        "--busy-office",
        "--busy-seed=9",
        "--busy-interval=0.5",
    ]
    config = build_config(build_parser().parse_args(argv))
    assert (config.transport, config.member_controls, config.idle_rooms, config.events) == (
        "HTTP",
        "k2",
        "failed",
        False,
    )
    assert (config.busy_office, config.busy_seed, config.busy_interval) == (True, 9, 0.5)
    quiet = build_config(build_parser().parse_args(["simulator", "--profile", "no-live"]))
    assert (quiet.live_query, quiet.member_controls, quiet.events) == (False, "none", False)


async def test_simulator_banner_names_the_report_port() -> None:
    """The banner says where events go: the real TCP report port, and the busy office."""
    config = profile_config("s-series-v2", busy_office=True, busy_seed=4, busy_interval=5.0)
    async with SimulatorServer(config) as sim:
        text = banner(sim)
        port = sim.report_port
    assert f"ConferenceStatus on TCP report port {port}" in text
    assert "busy office (seed 4, every 5 s)" in text
    assert port > 0
