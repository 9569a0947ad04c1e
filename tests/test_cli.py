"""The command line: subcommands are registered and ``--version`` works."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest

from gateway import __version__
from gateway.cli import main
from gateway.security.api_keys import hash_key
from tests.processes import GatewayProcess
from tests.timing import wait_until

SERVE_ENV = {
    "PBX_URL": "https://pbx.invalid:8088",
    "PBX_USERNAME": "api",
    "PBX_PASSWORD": "x",
    "GATEWAY_AUTH": "none",
    "GATEWAY_LOGIN_AT_START": "false",  # these tests are about the listening socket
}


def test_cli_version_prints_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    """``pbx-gateway --version`` prints the package version and exits 0."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_cli_api_key_prints_a_key_and_its_hash(capsys: pytest.CaptureFixture[str]) -> None:
    """`api-key` prints a fresh key and a keys-file entry holding its SHA-256, not the key."""
    assert main(["api-key", "--name", "wallboard", "--scope", "conferences:pins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    key = lines[1].strip()
    entry = json.loads(lines[3])
    assert key.startswith("pbxgw_")
    assert entry == {"name": "wallboard", "sha256": hash_key(key), "scopes": ["conferences:pins"]}
    assert key not in lines[3]


def test_cli_serve_refuses_to_start_without_gateway_auth(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve with no GATEWAY_AUTH stops with one line naming it: no accidental open door."""
    for name, value in {"PBX_URL": "https://pbx:8088", "PBX_USERNAME": "api"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PBX_PASSWORD", "x")
    monkeypatch.delenv("GATEWAY_AUTH", raising=False)
    assert main(["serve"]) == 2
    error = capsys.readouterr().err
    assert "GATEWAY_AUTH" in error
    assert len(error.strip().splitlines()) == 1


def test_cli_serve_on_a_busy_port_is_one_line_naming_the_port_and_flag(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve on a port another socket listens on: exit 1 and one line on stderr naming the
    port and --port, no traceback."""
    for name, value in SERVE_ENV.items():
        monkeypatch.setenv(name, value)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    # Besides the log's JSON lines (the GATEWAY_AUTH=none warning), exactly one line.
    (error,) = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("{")]
    assert error.startswith("pbx-gateway: cannot listen on ")
    assert f"127.0.0.1:{port}" in error
    assert f"port {port} is already in use" in error
    assert "--port" in error
    assert "Traceback" not in error


def test_cli_serve_logs_the_address_it_listens_on(tmp_path: Path) -> None:
    """The real `serve` logs `listening on http://HOST:PORT` once it accepts connections,
    and stops cleanly on SIGTERM."""
    log = tmp_path / "serve.log"
    gateway = GatewayProcess(SERVE_ENV, log)
    try:
        wait_until(
            lambda: httpx.get(f"{gateway.url}/healthz").status_code == 200,
            seconds=60,
            what="serve answering /healthz",
        )
    finally:
        assert gateway.stop() == 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    listening = [line for line in lines if line["message"].startswith("listening on")]
    assert [line["message"] for line in listening] == [f"listening on {gateway.url}"]
    assert listening[0]["level"] == "info"
