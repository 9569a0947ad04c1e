"""The wheel, built and run as deploy/Dockerfile does it, without Docker.

The builder stage's steps, here: the files it COPYs become a build context, and its last
RUN (uv sync --frozen from uv.lock, uv build --wheel, uv pip install of the wheel) runs in
a shell with its own ENV, /opt/venv and /wheels moved under a temporary folder (uv's cache
makes reruns quick). Then that venv's `pbx-gateway serve` runs as a subprocess against
the simulator, is asked one query, probed with the image's HEALTHCHECK command, its
GraphiQL page driven by headless Chromium (the assets come from the wheel: no npm, no
CDN), and stopped with SIGTERM, as a container runtime would.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from gateway.simulator import DEMO_PASSWORD, DEMO_USERNAME, run_simulator_in_thread
from tests.browser_helpers import browse, browser_driver
from tests.deploy_helpers import REPO, UV, builder_sources, dockerfile_stages, run_command
from tests.loopback import free_port

pytestmark = pytest.mark.slow

QUERY = '{ conference(number: "6401") { name } }'
READY_WITHIN = 30.0  # seconds for the subprocess to start, log in and report ready
STOP_WITHIN = 30.0  # seconds for SIGTERM to end it (grace 10 s + logout, at worst)


@dataclass(frozen=True)
class Installed:
    """The built wheel and the venv it was installed into."""

    wheel: Path
    venv: Path

    def program(self, name: str) -> Path:
        """A program in the venv's bin directory."""
        return self.venv / "bin" / name


@dataclass(frozen=True)
class Served:
    """What one run of the installed gateway did, for the tests below to assert on."""

    readiness: tuple[int, dict[str, Any]]
    answer: dict[str, Any]
    graphiql: dict[str, Any]
    healthcheck_live: int
    healthcheck_dead: int
    returncode: int
    logouts: int
    written: list[str]
    log: str


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel built from the image's build context, installed into an empty venv."""
    root = tmp_path_factory.mktemp("wheel")
    context = root / "context"
    context.mkdir()
    _, stages = dockerfile_stages()
    for source in builder_sources(stages[0]):
        if (REPO / source).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(REPO / source, context / source, ignore=ignore)
        else:
            (context / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / source, context / source)
    builder = stages[0]
    wheels, venv = root / "wheels", root / "venv"

    def here(text: str) -> str:
        return text.replace("/opt/venv", str(venv)).replace("/wheels", str(wheels))

    environment = {**os.environ, "PATH": f"{UV.parent}:{os.environ['PATH']}"}
    for env in builder.all("ENV"):
        for assignment in shlex.split(env.arguments):
            name, _, value = assignment.partition("=")
            environment[name] = here(value)
    environment["UV_PYTHON"] = sys.base_prefix + "/bin/python3"  # the image's own python
    for argument in builder.all("ARG"):
        name, _, default = argument.arguments.partition("=")
        environment[name] = default
    environment.pop("VIRTUAL_ENV", None)
    run = builder.all("RUN")[-1].arguments
    assert run.startswith("--mount=type=cache,target=/root/.cache/uv ")
    script = here(run.partition(" ")[2])
    run_command("sh", "-euc", script, cwd=context, env=environment)
    (wheel,) = wheels.glob("pbx_gateway-*.whl")
    return Installed(wheel=wheel, venv=venv)


def _files_under(*roots: Path) -> set[str]:
    return {str(path) for root in roots for path in root.rglob("*")}


def _healthcheck(installed: Installed, port: int) -> int:
    """The image's HEALTHCHECK command, pointed at ``port``, with the venv's python."""
    _, stages = dockerfile_stages()
    arguments = stages[-1].all("HEALTHCHECK")[-1].arguments
    program, flag, code = json.loads(arguments.partition("CMD ")[2])
    code = code.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    result = subprocess.run(  # noqa: S603 - the Dockerfile's own command
        [installed.program(program), flag, code], capture_output=True, timeout=30
    )
    return result.returncode


def _wait_until_ready(process: subprocess.Popen[bytes], url: str) -> tuple[int, dict[str, Any]]:
    deadline = time.monotonic() + READY_WITHIN
    last: tuple[int, dict[str, Any]] = (0, {})
    while time.monotonic() < deadline and process.poll() is None:
        try:
            response = httpx.get(url, timeout=2)
            last = (response.status_code, response.json())
            if response.status_code == 200:
                return last
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return last


@pytest.fixture(scope="module")
def served(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Run the installed `pbx-gateway serve` against the simulator once, then stop it."""
    root = tmp_path_factory.mktemp("serve")
    workdir, tmpdir, log_path = root / "cwd", root / "tmp", root / "gateway.log"
    workdir.mkdir()
    tmpdir.mkdir()
    before = _files_under(installed.venv, workdir, tmpdir)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with run_simulator_in_thread() as simulator:
        environment = {
            # As in the image: the venv first on PATH, no byte code, no home to write to.
            "PATH": f"{installed.venv / 'bin'}:/usr/bin:/bin",
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOME": "/nonexistent",
            "TMPDIR": str(tmpdir),
            "LANG": "C.UTF-8",
            "PBX_URL": simulator.base_url,
            "PBX_USERNAME": DEMO_USERNAME,
            "PBX_PASSWORD": DEMO_PASSWORD,
            "GATEWAY_AUTH": "none",
            "GATEWAY_GRAPHIQL": "true",
        }
        command = [str(installed.program("pbx-gateway")), "serve", "--port", str(port)]
        with log_path.open("wb") as output:
            process = subprocess.Popen(  # noqa: S603 - the installed console script
                command, env=environment, cwd=workdir, stdout=output, stderr=subprocess.STDOUT
            )
        try:
            readiness = _wait_until_ready(process, f"{base_url}/readyz")
            answer: dict[str, Any] = {}
            graphiql: dict[str, Any] = {}
            healthcheck_live = -1
            if readiness[0] == 200:  # else the tests below fail, showing the log
                response = httpx.post(f"{base_url}/graphql", json={"query": QUERY}, timeout=10)
                answer = response.json()
                healthcheck_live = _healthcheck(installed, port)
                page_url = f"{base_url}/graphql?q={quote(QUERY)}"
                graphiql = asyncio.run(
                    browse(browser_driver(), "graphiql", page_url, "wheel-graphiql.png")
                )
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                returncode = process.wait(timeout=STOP_WITHIN)
            except subprocess.TimeoutExpired:
                process.kill()
                returncode = process.wait()
        logouts = simulator.state.stats.logouts
    healthcheck_dead = _healthcheck(installed, port)
    written = sorted(_files_under(installed.venv, workdir, tmpdir) - before)
    log = log_path.read_text(encoding="utf-8", errors="replace")
    yield Served(
        readiness,
        answer,
        graphiql,
        healthcheck_live,
        healthcheck_dead,
        returncode,
        logouts,
        written,
        log,
    )


def test_wheel_holds_the_package_and_the_command(installed: Installed) -> None:
    """The wheel carries gateway/ with the simulator, the `pbx-gateway` script, and
    none of the repository's tests, benchmarks, scripts or deploy files."""
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = wheel.read(entry_points).decode()
    assert {"gateway/cli.py", "gateway/simulator/server.py"} <= set(names)
    assert "pbx-gateway = gateway.cli:main" in scripts
    top_level = {name.split("/")[0] for name in names if not name.startswith("pbx_gateway-")}
    assert top_level == {"gateway"}


def test_wheel_installs_complete_into_an_empty_venv(installed: Installed) -> None:
    """Its declared dependencies are all there and consistent, and `gateway` is imported
    from the venv, not from the checkout."""
    python = installed.program("python")
    where = "import gateway; print(gateway.__file__)"
    imported = run_command(python, "-c", where, cwd=installed.venv).stdout  # not the checkout
    assert Path(imported.strip()).is_relative_to(installed.venv)
    run_command(UV, "pip", "check", "--python", python)


def test_wheel_gateway_becomes_ready_against_the_simulator(served: Served) -> None:
    """/readyz turns 200 once the start-up login succeeded."""
    status, body = served.readiness
    assert (status, body.get("ready")) == (200, True), served.log


def test_wheel_gateway_answers_a_query(served: Served) -> None:
    """A real GraphQL query goes through the installed gateway to the simulator."""
    assert served.answer == {"data": {"conference": {"name": "PM"}}}, served.log


def test_image_healthcheck_tells_live_from_dead(served: Served) -> None:
    """The Dockerfile's HEALTHCHECK command exits 0 against the running gateway and
    non-zero once nothing listens."""
    assert served.healthcheck_live == 0
    assert served.healthcheck_dead != 0


def test_wheel_gateway_logs_out_of_the_pbx_on_sigterm(served: Served) -> None:
    """SIGTERM stops the gateway gracefully: its PBX token is given back."""
    assert served.logouts == 1, served.log


def test_wheel_gateway_exits_0_on_sigterm(served: Served) -> None:
    """A SIGTERM stop is a clean exit, status 0."""
    assert served.returncode == 0, served.log


def test_wheel_gateway_writes_no_file(served: Served) -> None:
    """Nothing is written into the venv, the working directory or TMPDIR: a read-only
    root filesystem is fine."""
    assert served.written == []


def test_wheel_serves_graphiql_that_runs_a_query(served: Served) -> None:
    """GATEWAY_GRAPHIQL=true on the installed wheel: headless Chromium loads the page and
    its assets from the wheel (no npm, no CDN), runs the query, and shows the answer."""
    assert served.graphiql.get("problems") == [], served.log
    assert "conference" in served.graphiql["editor"]
    assert '"name": "PM"' in served.graphiql["result"]
