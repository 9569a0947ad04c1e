"""`make run` from a fresh clone on a machine with python3 and make but no Node.js.

The checkout's files (as a clone has them: tracked or not ignored) are copied to a temporary
folder, and `make run` runs there with a PATH holding only python3, make and the coreutils
its recipes call: no npm, no node. The Makefile installs uv, then the runtime set from
uv.lock, and starts the demo; headless Chromium (driven from the test's own PATH) then
opens GraphiQL and runs a query. The venv it built is checked to hold no development tool.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.browser_helpers import browse, browser_driver
from tests.loopback import free_port
from tests.timing import wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
QUERY = '{ conference(number: "6401") { name } }'
PROGRAMS = ("make", "touch", "rm", "mkdir", "cat", "sh")  # what the recipes call


def _clone(target: Path) -> None:
    """The files a fresh clone of this checkout would have (tracked, or new and not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _bare_path(folder: Path) -> str:
    """A PATH with python3, make and a few coreutils, and nothing from Node.js."""
    folder.mkdir()
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    (folder / "python3").symlink_to(base)  # the interpreter itself, not a venv or a shim
    for program in PROGRAMS:
        found = shutil.which(program)
        assert found, f"{program} is needed on this machine"
        (folder / program).symlink_to(found)
    return str(folder)


@pytest.fixture(scope="module")
def make_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """`make run` in a fresh copy, on free ports, without npm; stopped afterwards."""
    root = tmp_path_factory.mktemp("make-run")
    clone = root / "clone"
    _clone(clone)
    path = _bare_path(root / "bin")
    assert shutil.which("npm", path=path) is None and shutil.which("node", path=path) is None
    port, log_path = free_port(), root / "make-run.log"
    environment = {**os.environ, "PATH": path}
    for variable in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "MAKEFLAGS", "MFLAGS"):
        environment.pop(variable, None)
    command = ["make", "run", f"PORT={port}", "PBX_PORT=0"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - make, fixed arguments
            command,
            cwd=clone,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200,
            seconds=240,
            what=f"make run to serve (log: {log_path})",
        )
        yield base_url, clone, log_path
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_make_run_without_npm_serves_graphiql_that_runs_a_query(
    make_run: tuple[str, Path, Path],
) -> None:
    """A fresh clone's `make run` on a PATH without npm or node: GraphiQL's page and every
    asset it loads answer 200, and headless Chromium runs a query and shows the answer."""
    base_url, _, log_path = make_run
    page = httpx.get(f"{base_url}/graphql", headers={"accept": "text/html"}, timeout=10)
    assert page.status_code == 200, log_path.read_text(errors="replace")
    assert "/graphiql-assets/graphiql@3.8.3/graphiql.min.js" in page.text
    found = asyncio.run(
        browse(
            browser_driver(),
            "graphiql",
            f"{base_url}/graphql?q={quote(QUERY)}",
            "make-run-graphiql.png",
        )
    )
    assert found["problems"] == []
    assert '"name": "PM"' in found["result"]


def test_make_run_installs_the_runtime_set_only(make_run: tuple[str, Path, Path]) -> None:
    """The venv `make run` built holds the gateway's dependencies from uv.lock and none of
    the development tools (pytest, mypy, ruff, hypothesis, kubernetes-validate)."""
    _, clone, _ = make_run
    venv = clone / ".venv"
    assert (venv / ".installed-run").is_file()
    assert not (venv / ".installed-dev").exists()
    uv = clone / ".venv-tools" / "bin" / "uv"
    listed = subprocess.run(  # noqa: S603 - the uv the Makefile installed, fixed arguments
        [uv, "pip", "list", "--python", venv / "bin" / "python"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout.lower()
    for runtime in ("strawberry-graphql", "starlette", "uvicorn", "httpx", "cross-web"):
        assert f"\n{runtime} " in listed, runtime
    for tool in ("pytest", "mypy", "ruff", "hypothesis", "kubernetes-validate"):
        assert f"\n{tool} " not in listed, tool
