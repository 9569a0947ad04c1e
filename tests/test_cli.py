"""The command line: subcommands are registered and ``--version`` works."""

from __future__ import annotations

import json

import pytest

from gateway import __version__
from gateway.cli import main
from gateway.security.api_keys import hash_key


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
