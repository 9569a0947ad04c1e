"""deploy/Dockerfile and .dockerignore, read without a Docker engine.

test_deploy_wheel.py builds the wheel from exactly what the builder stage copies and runs
it, including the HEALTHCHECK command; this module checks the Dockerfile's own promises.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
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
    """Two stages from the same slim Python image that pyproject allows, pinned by digest."""
    arguments, _ = dockerfile_stages()
    assert [(stage.name, stage.base) for stage in stages] == [
        ("builder", "${PYTHON_IMAGE}"),
        ("runtime", "${PYTHON_IMAGE}"),
    ]
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", arguments["PYTHON_IMAGE"])
    with (REPO / "pyproject.toml").open("rb") as file:
        assert tomllib.load(file)["project"]["requires-python"] == ">=3.11"


def test_dockerfile_builder_installs_the_lock_then_the_wheel(stages: list[Stage]) -> None:
    """The builder installs uv by hash, syncs exactly uv.lock into /opt/venv (--frozen: never
    re-resolved), builds the wheel and installs it (not the source tree) without deps."""
    install_uv, build = (run.arguments for run in stages[0].all("RUN"))
    assert "pip install --require-hashes --no-deps -r scripts/uv-requirements.txt" in install_uv
    assert "uv sync --frozen --no-install-project" in build
    assert "uv build --wheel --out-dir /wheels" in build
    assert f"uv pip install --python {VENV}/bin/python --no-deps /wheels/pbx_gateway-*.whl" in build
    environment = " ".join(env.arguments for env in stages[0].all("ENV"))
    for setting in (f"UV_PROJECT_ENVIRONMENT={VENV}", "UV_PYTHON_DOWNLOADS=never"):
        assert setting in environment


def test_dockerfile_installs_nothing_unpinned(stages: list[Stage]) -> None:
    """Every install is pinned: pip only with --require-hashes, uv only from the frozen lock,
    the build backend by pyproject's build constraint, no apt, npm, curl or wget."""
    for stage in stages:
        for run in stage.all("RUN"):
            commands = run.arguments
            for unpinned in ("apt-get", "apk ", "npm ", "curl ", "wget ", "uv add", "uv lock"):
                assert unpinned not in commands, (stage.name, unpinned)
            if "pip install" in commands.replace("uv pip install", ""):
                assert "--require-hashes" in commands
            if "uv sync" in commands:
                assert "--frozen" in commands
    requirements = (REPO / "scripts" / "uv-requirements.txt").read_text(encoding="utf-8")
    assert re.search(r"^uv==\d+\.\d+\.\d+ \\$", requirements, re.MULTILINE)
    assert "--hash=sha256:" in requirements
    with (REPO / "pyproject.toml").open("rb") as file:
        pyproject = tomllib.load(file)
    (backend,) = pyproject["build-system"]["requires"]
    assert backend.startswith("setuptools")
    (pinned,) = pyproject["tool"]["uv"]["build-constraint-dependencies"]
    assert re.fullmatch(r"setuptools==[\d.]+", pinned)


def test_dockerfile_build_is_reproducible_by_construction(stages: list[Stage]) -> None:
    """SOURCE_DATE_EPOCH is a build argument of the builder (byte code and the wheel take
    its time, not now's), the header shows the reproducible build command, and no layer
    keeps a download cache (cache mounts only)."""
    builder_arguments = [arg.arguments.partition("=")[0] for arg in stages[0].all("ARG")]
    assert "SOURCE_DATE_EPOCH" in builder_arguments
    text = (REPO / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    assert "rewrite-timestamp=true" in text
    assert '--build-arg SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)"' in text
    for run in stages[0].all("RUN"):
        if "install" in run.arguments or "sync" in run.arguments:
            assert run.arguments.startswith("--mount=type=cache,target=/root/.cache/")


def test_dockerfile_labels_name_version_revision_source_and_licence(stages: list[Stage]) -> None:
    """The runtime stage carries the OCI labels: version (pyproject's, by default),
    revision and source (build arguments), and pyproject's licence."""
    runtime = stages[1]
    defaults = dict(arg.arguments.partition("=")[::2] for arg in runtime.all("ARG"))
    assert defaults["VERSION"] == project_version()
    assert {"REVISION", "SOURCE"} <= set(defaults)
    (label,) = runtime.all("LABEL")
    labels = dict(item.split("=", 1) for item in shlex.split(label.arguments))
    with (REPO / "pyproject.toml").open("rb") as file:
        licence = tomllib.load(file)["project"]["license"]
    assert labels == {
        "org.opencontainers.image.title": "pbx-gateway",
        "org.opencontainers.image.description": labels["org.opencontainers.image.description"],
        "org.opencontainers.image.version": "${VERSION}",
        "org.opencontainers.image.revision": "${REVISION}",
        "org.opencontainers.image.source": "${SOURCE}",
        "org.opencontainers.image.licenses": licence,
    }


def test_dockerfile_installs_the_redis_extra_by_default(stages: list[Stage]) -> None:
    """The image can share one PBX session across replicas (pyproject's redis extra)."""
    extras = [arg.arguments for arg in stages[0].all("ARG") if arg.arguments.startswith("EXTRAS=")]
    assert extras == ["EXTRAS=redis"]
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
    assert sources == [
        "scripts/uv-requirements.txt",
        "pyproject.toml",
        "uv.lock",
        "README.md",
        "gateway",
    ]
    for source in sources:
        assert dockerignore_allows(source), source
        assert (REPO / source).exists(), source
    for kept_out in (
        ".git",
        ".venv",
        ".venv-tools",
        "tests/conftest.py",
        "deploy/secrets/pbx_password",
        "scripts/chaos.py",
    ):
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


def test_dockerfile_image_carries_graphiql_without_npm(stages: list[Stage]) -> None:
    """GraphiQL's committed files reach the image inside gateway/ (the context lets them
    in, the wheel packages them); no stage runs node or npm."""
    assert dockerignore_allows("gateway/static/graphiql/manifest.json")
    assert dockerignore_allows("gateway/templates/graphiql.html")
    with (REPO / "pyproject.toml").open("rb") as file:
        package_data = tomllib.load(file)["tool"]["setuptools"]["package-data"]["gateway"]
    assert {"static/graphiql/**/*", "templates/*"} <= set(package_data)
    for stage in stages:
        assert "node" not in stage.base
        assert not any("npm" in run.arguments for run in stage.all("RUN"))


def test_image_tag_in_build_instructions_is_the_project_version() -> None:
    """The build command in the Dockerfile's header tags the pyproject version."""
    text = (REPO / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    assert f"-t pbx-gateway:{project_version()} ." in text
