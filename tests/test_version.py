"""One version, reported everywhere: pyproject.toml, the installed metadata, ``--version``,
``/healthz`` and the ``gateway_build_info`` metric series."""

from __future__ import annotations

import importlib.metadata
import platform
import re
import tomllib
from pathlib import Path

import pytest

from gateway import __version__
from gateway.cli import main
from tests.gateway_stack import StackFactory

ROOT = Path(__file__).resolve().parent.parent


def test_version_is_the_same_in_pyproject_metadata_and_package() -> None:
    """gateway.__version__ is pyproject's [project] version and the installed metadata's."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert __version__ == pyproject["project"]["version"]
    assert importlib.metadata.version("pbx-gateway") == __version__


def test_version_has_a_changelog_section() -> None:
    """CHANGELOG.md (Keep a Changelog) has an Unreleased section and one for this version."""
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in changelog
    assert re.search(rf"^## \[{re.escape(__version__)}\]", changelog, re.MULTILINE)


def test_version_printed_by_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    """``pbx-gateway --version`` prints ``pbx-gateway <version>``."""
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"pbx-gateway {__version__}"


async def test_version_in_healthz_and_build_info_metric(gateway_stack: StackFactory) -> None:
    """/healthz names the version; /metrics has one gateway_build_info series with it."""
    stack = await gateway_stack()
    health = await stack.client.get("/healthz")
    metrics = await stack.client.get("/metrics")
    assert health.json()["version"] == __version__
    series = [line for line in metrics.text.splitlines() if line.startswith("gateway_build_info")]
    expected = (
        f'gateway_build_info{{python="{platform.python_version()}",version="{__version__}"}} 1.0'
    )
    assert series == [expected]
