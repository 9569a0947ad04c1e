"""The command line: subcommands are registered and ``--version`` works."""

from __future__ import annotations

import pytest

from gateway import __version__
from gateway.cli import main


def test_cli_version_prints_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    """``pbx-gateway --version`` prints the package version and exits 0."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out
