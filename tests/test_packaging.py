"""Packaging tells the truth: every module the gateway imports is declared in
pyproject.toml, and every floor there works (installed at the lowest versions allowed)."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from tests.deploy_helpers import UV

ROOT = Path(__file__).resolve().parent.parent
SMOKE = Path(__file__).resolve().parent / "floors_smoke.py"


def _pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        project: dict[str, Any] = tomllib.load(file)["project"]
    return project


def _name(requirement: str) -> str:
    """The normalized distribution name of a requirement such as ``pyjwt[crypto]>=2.8``."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match[0]).lower()


def _floors(requirements: list[str]) -> dict[str, str]:
    """name -> the version after ``>=`` of each requirement."""
    floors = {}
    for requirement in requirements:
        match = re.search(r">=([0-9][0-9.]*)", requirement)
        assert match, f"{requirement} has no floor"
        floors[_name(requirement)] = match[1]
    return floors


def _imported_modules() -> set[str]:
    """Top-level modules imported anywhere in gateway/, except the standard library's."""
    modules: set[str] = set()
    for path in (ROOT / "gateway").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"gateway", "__future__"}


def test_packaging_declares_every_module_the_gateway_imports() -> None:
    """Each third-party module gateway/ imports comes from a distribution pyproject names:
    a dependency, or for redis and opentelemetry (imported only when configured) an extra."""
    project = _pyproject()
    required = {_name(r) for r in project["dependencies"]}
    optional = {_name(r) for r in project["optional-dependencies"]["redis"]}
    optional |= {_name(r) for r in project["optional-dependencies"]["otel"]}
    owners = importlib.metadata.packages_distributions()
    for module in sorted(_imported_modules()):
        distributions = {_name(d) for d in owners.get(module, [])}
        assert distributions, f"{module} is imported but no installed distribution provides it"
        declared = required if module not in ("redis", "opentelemetry") else optional
        assert distributions & declared, f"{module} ({distributions}) is not declared"


def test_packaging_lowest_direct_versions_pass_the_smoke_test(tmp_path: Path) -> None:
    """In a throw-away venv, uv installs the gateway (with redis) at the lowest versions
    pyproject's floors allow; each direct dependency is exactly at its floor, and the smoke
    test there imports every module, builds the app and answers a query from the simulator."""
    venv = tmp_path / "venv"
    environment = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    environment["UV_PYTHON_DOWNLOADS"] = "never"

    def uv(*arguments: str | Path) -> str:
        done = subprocess.run(  # noqa: S603 - the Makefile's pinned uv, fixed arguments
            [UV, *map(str, arguments)],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    source = tmp_path / "source"  # a copy: setuptools writes build/ beside the sources
    for name in ("pyproject.toml", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "gateway", source / "gateway", ignore=shutil.ignore_patterns("__pycache__")
    )
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    uv("venv", "--quiet", "--python", base_python, venv)
    python = venv / "bin" / "python"
    uv(
        "pip",
        "install",
        "--quiet",
        "--python",
        python,
        "--resolution",
        "lowest-direct",
        f"{source}[redis]",
    )
    installed = {
        _name(line.split("==")[0]): line.split("==")[1]
        for line in uv("pip", "freeze", "--python", python).splitlines()
        if "==" in line
    }
    project = _pyproject()
    for name, floor in _floors(
        project["dependencies"] + project["optional-dependencies"]["redis"]
    ).items():
        version = installed[name]
        assert version.split(".")[: len(floor.split("."))] == floor.split("."), (name, version)
    smoke = subprocess.run(  # noqa: S603 - the venv's python and our own script
        [python, SMOKE, "redis"],
        cwd=tmp_path,  # not the checkout: gateway must come from the venv
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (smoke.returncode, smoke.stdout) == (0, "ok\n"), smoke.stderr
