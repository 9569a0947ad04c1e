"""The ``pbx-gateway simulator`` command: options map to the config, bad input exits cleanly."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from gateway.cli import build_parser
from gateway.simulator import SimulatorServer, default_conferences
from gateway.simulator.command import banner, build_config, run


def test_simulator_command_defaults_are_the_demo() -> None:
    """Without options: port 8088, demo credentials, default rooms, default behaviour."""
    args = build_parser().parse_args(["simulator"])
    config = build_config(args)
    assert (args.port, args.host) == (8088, "127.0.0.1")
    assert (config.username, config.password, config.conferences) == ("api", "yeastar-demo", None)


def test_simulator_command_options_reach_the_config() -> None:
    """Each behaviour switch lands in SimulatorConfig."""
    argv = [
        "simulator",
        "--conferences=40",
        "--latency=0.2",
        "--jitter=0.1",
        "--serial",
        "--token-ttl=60",
        "--lockout-threshold=3",
        "--lockout-seconds=30",
        "--k2",
        "--unknown-numbers=failed",
        "--new-login-kills-old-tokens",
        "--username=ops",
        "--password=s3cret",
    ]
    config = build_config(build_parser().parse_args(argv))
    assert config.conferences is not None and len(config.conferences) == 40
    assert (
        config.latency,
        config.jitter,
        config.serial,
        config.token_ttl,
    ) == (0.2, 0.1, True, 60.0)
    assert (
        config.lockout_threshold,
        config.lockout_seconds,
        config.k2,
        config.unknown_numbers,
        config.new_login_kills_old_tokens,
    ) == (3, 30.0, True, "failed", True)
    assert (config.username, config.password) == ("ops", "s3cret")


def test_simulator_command_loads_data_file(tmp_path: Path) -> None:
    """``--data FILE`` loads the rooms from JSON."""
    path = tmp_path / "rooms.json"
    path.write_text(json.dumps({"conferences": default_conferences()[:3]}))
    config = build_config(build_parser().parse_args(["simulator", "--data", str(path)]))
    assert config.conferences is not None and len(config.conferences) == 3


def test_simulator_command_bad_data_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad data file prints one clear line and exits 2 without starting."""
    path = tmp_path / "rooms.json"
    path.write_text("[{}]")
    status = run(build_parser().parse_args(["simulator", "--data", str(path)]))
    assert status == 2
    assert "conference #0: missing field(s)" in capsys.readouterr().out


def test_simulator_command_port_in_use_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    """A port already in use exits 1 with a message naming it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run(build_parser().parse_args(["simulator", f"--port={port}"])) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().out


def test_simulator_command_banner_shows_url_credentials_and_admin() -> None:
    """The start banner names the URL, the demo credentials and the admin prefix."""
    server = SimulatorServer(port=18088)
    text = banner(server)
    assert "http://127.0.0.1:18088" in text
    assert "'api'" in text and "'yeastar-demo'" in text
    assert "/__simulator/" in text
