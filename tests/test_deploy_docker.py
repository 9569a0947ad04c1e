"""deploy/Dockerfile and .dockerignore, read without a Docker engine.

test_deploy_wheel.py builds the wheel from exactly what the builder stage copies and runs
it, including the HEALTHCHECK command; this module checks the Dockerfile's own promises.
"""

from __future__ import annotations

import ast
import json
import tomllib
from fnmatch import fnmatch

import pytest

from tests.deploy_helpers import (
    DOCKERIGNORE,
    REPO,
    Stage,
    builder_sources,
    dockerfile_stages,
    option,
    project_version,
)

VENV = "/opt/venv"


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    """The Dockerfile's stages, builder first."""
    return dockerfile_stages()[1]


def dockerignore_allows(path: str) -> bool:
    """Whether .dockerignore lets ``path`` into the context: Docker's rules as far as this
    file uses them (the last matching rule wins; a rule on a directory covers its files)."""
    allowed = True
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        rule = line.strip()
        if not rule or rule.startswith("#"):
            continue
        negated, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
        parts = path.rstrip("/").split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch(prefix, pattern) for prefix in prefixes):
            allowed = negated
    return allowed


def test_dockerfile_builds_in_one_stage_and_runs_in_another(stages: list[Stage]) -> None:
    """Two stages from the same slim Python image that pyproject allows."""
    arguments, _ = dockerfile_stages()
    assert [(stage.name, stage.base) for stage in stages] == [
        ("builder", "${PYTHON_IMAGE}"),
        ("runtime", "${PYTHON_IMAGE}"),
    ]
    assert arguments["PYTHON_IMAGE"] == "python:3.11-slim"
    with (REPO / "pyproject.toml").open("rb") as file:
        assert tomllib.load(file)["project"]["requires-python"] == ">=3.11"


def test_dockerfile_builder_installs_the_wheel_into_the_venv(stages: list[Stage]) -> None:
    """The builder installs the built wheel (not the source tree) into /opt/venv."""
    (run,) = stages[0].all("RUN")
    commands = run.arguments
    assert f"python -m venv --without-pip {VENV}" in commands
    assert "pip wheel --no-deps --wheel-dir /wheels ." in commands
    assert 'wheel="$(echo /wheels/pbx_gateway-*.whl)"' in commands
    assert f'pip --python {VENV}/bin/python install "${{wheel}}${{EXTRAS:+[$EXTRAS]}}"' in commands


def test_dockerfile_installs_the_redis_extra_by_default(stages: list[Stage]) -> None:
    """The image can share one PBX session across replicas (pyproject's redis extra)."""
    (extras,) = stages[0].all("ARG")
    assert extras.arguments == "EXTRAS=redis"
    with (REPO / "pyproject.toml").open("rb") as file:
        assert "redis" in tomllib.load(file)["project"]["optional-dependencies"]


def test_dockerfile_runtime_receives_only_the_venv(stages: list[Stage]) -> None:
    """The runtime stage copies /opt/venv from the builder and nothing from the context."""
    copies = [copy.flags() for copy in stages[1].all("COPY")]
    assert copies == [({"from": "builder"}, f"{VENV} {VENV}")]


def test_dockerfile_context_lets_in_exactly_what_the_builder_copies(
    stages: list[Stage],
) -> None:
    """Every COPY source passes .dockerignore; .git, .venv, tests and local secrets do not."""
    sources = builder_sources(stages[0])
    assert sources == ["pyproject.toml", "README.md", "gateway"]
    for source in sources:
        assert dockerignore_allows(source), source
        assert (REPO / source).exists(), source
    for kept_out in (".git", ".venv", "tests/conftest.py", "deploy/secrets/pbx_password"):
        assert not dockerignore_allows(kept_out), kept_out
    assert not dockerignore_allows("gateway/__pycache__/app.cpython-311.pyc")


def test_dockerfile_runs_as_numeric_non_root_user(stages: list[Stage]) -> None:
    """USER is numeric 10001:10001 (Kubernetes' runAsNonRoot can check it), set after
    the last RUN, so nothing in the image runs as root at run time."""
    runtime = stages[1]
    assert [user.arguments for user in runtime.all("USER")] == ["10001:10001"]
    keywords = [instruction.keyword for instruction in runtime.instructions]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")


def test_dockerfile_runtime_writes_no_byte_code(stages: list[Stage]) -> None:
    """PYTHONDONTWRITEBYTECODE=1, so a read-only root filesystem is fine; the venv's
    bin directory comes first on PATH."""
    environment = " ".join(env.arguments for env in stages[1].all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in environment
    assert f"PATH={VENV}/bin:$PATH" in environment


def test_dockerfile_command_serves_on_the_exposed_port(stages: list[Stage]) -> None:
    """ENTRYPOINT is pyproject's console script; CMD serves on all interfaces on the
    port EXPOSE names and the HEALTHCHECK probes."""
    runtime = stages[1]
    with (REPO / "pyproject.toml").open("rb") as file:
        scripts = tomllib.load(file)["project"]["scripts"]
    assert runtime.all("ENTRYPOINT")[-1].exec_form() == ["pbx-gateway"]
    assert "pbx-gateway" in scripts
    command = runtime.all("CMD")[-1].exec_form()
    assert command[0] == "serve"
    assert option(command, "--host") == "0.0.0.0"
    port = option(command, "--port")
    assert [expose.arguments for expose in runtime.all("EXPOSE")] == [port]
    healthcheck = runtime.all("HEALTHCHECK")[-1]
    assert f"http://127.0.0.1:{port}/healthz" in healthcheck.arguments


def test_dockerfile_healthcheck_is_valid_python_without_curl(stages: list[Stage]) -> None:
    """The HEALTHCHECK runs python's urllib (slim has no curl) in exec form."""
    healthcheck = stages[1].all("HEALTHCHECK")[-1]
    _, _, command = healthcheck.arguments.partition("CMD ")
    program, flag, code = json.loads(command)
    assert (program, flag) == ("python", "-c")
    ast.parse(code)
    assert "urllib.request.urlopen" in code


def test_dockerfile_marks_where_graphiql_assets_will_be_built() -> None:
    """The GraphiQL asset stage is a marked placeholder, not a half-built stage."""
    text = (REPO / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    assert "GraphiQL assets" in text and "scripts/fetch-graphiql-assets" in text


def test_image_tag_in_build_instructions_is_the_project_version() -> None:
    """The build command in the Dockerfile's header tags the pyproject version."""
    text = (REPO / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    assert f"-t pbx-gateway:{project_version()} ." in text
