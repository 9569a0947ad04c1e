"""deploy/docker-compose*.yml: real settings, working wiring, the same hardening as Kubernetes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gateway.simulator import DEMO_PASSWORD, DEMO_USERNAME
from tests.deploy_helpers import (
    DEPLOY,
    PASSWORD_VARIABLES,
    PLACEHOLDER_FILES,
    REPO,
    Document,
    dockerfile_stages,
    load_one,
    option,
    project_version,
    run_command,
    serve_variable_names,
    settings_for,
    shutdown_budget,
)

DEMO = DEPLOY / "docker-compose.yml"
PRODUCTION = DEPLOY / "docker-compose.prod.yml"
# What an operator would export for docker-compose.prod.yml; the rest keep their defaults.
OPERATOR_ENVIRONMENT = {"PBX_URL": "https://192.168.5.150:8088"}


@pytest.fixture(scope="module")
def serve_names() -> frozenset[str]:
    """Every environment variable `pbx-gateway serve` reads."""
    return serve_variable_names()


@pytest.fixture(scope="module", params=[DEMO, PRODUCTION], ids=lambda path: path.name)
def compose(request: pytest.FixtureRequest) -> Document:
    """Each compose file, parsed (YAML merge keys resolved)."""
    path: Path = request.param
    return load_one(path)


def interpolate(value: str, environment: Mapping[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?message}``."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, word = match[1], match[2], match[3]
        if environment.get(name):
            return environment[name]
        assert operator != ":?", f"compose would stop: {word}"
        assert operator == ":-", f"${{{name}}} has no default"
        return str(word)

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:[-?])([^}]*))?\}", substitute, value)


def gateway_service(compose: Document) -> Document:
    """The service that runs `serve` (the image's default command)."""
    service: Document = compose["services"]["gateway"]
    return service


def environment_of(compose: Document) -> dict[str, str]:
    """The gateway's environment as the operator's shell would interpolate it."""
    raw: dict[str, Any] = gateway_service(compose)["environment"]
    return {name: interpolate(str(value), OPERATOR_ENVIRONMENT) for name, value in raw.items()}


def image_default_command() -> list[str]:
    """The runtime stage's CMD: what a service without `command:` runs."""
    _, stages = dockerfile_stages()
    return stages[-1].all("CMD")[-1].exec_form()


def test_compose_services_are_the_expected_ones() -> None:
    """The try-out runs the simulator and the gateway; production only the gateway."""
    assert sorted(load_one(DEMO)["services"]) == ["gateway", "simulator"]
    assert sorted(load_one(PRODUCTION)["services"]) == ["gateway"]


def test_compose_environment_names_are_real_settings(
    compose: Document, serve_names: frozenset[str]
) -> None:
    """Every variable the gateway service sets is one serve reads, and exactly one of
    them is a password source."""
    environment = gateway_service(compose)["environment"]
    assert set(environment) - serve_names == set()
    assert len([name for name in environment if name in PASSWORD_VARIABLES]) == 1


def test_compose_services_run_hardened(compose: Document) -> None:
    """Read-only root, no capabilities, no privilege escalation, as in Kubernetes."""
    for name, service in compose["services"].items():
        hardening = (service["read_only"], service["cap_drop"], service["security_opt"])
        assert hardening == (True, ["ALL"], ["no-new-privileges:true"]), name
        assert "privileged" not in service and "cap_add" not in service, name


def test_compose_ports_are_published_on_loopback_only(compose: Document) -> None:
    """Nothing is reachable from the network unless the operator says so."""
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            published = interpolate(port, {})
            assert published.startswith("127.0.0.1:"), f"{name} publishes {published}"


def test_compose_images_carry_the_project_version(compose: Document) -> None:
    """Every service runs pbx-gateway:<pyproject version>; the demo builds it from the
    repository root with deploy/Dockerfile."""
    for service in compose["services"].values():
        assert interpolate(service["image"], {}) == f"pbx-gateway:{project_version()}"
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert context == REPO
            assert (context / service["build"]["dockerfile"]).is_file()


def test_compose_stop_grace_covers_graceful_stop_and_logout(
    compose: Document, tmp_path: Path
) -> None:
    """docker sends SIGKILL only after the request grace and the PBX logout could end."""
    environment = environment_of(compose)
    files = {v: PLACEHOLDER_FILES[n] for n, v in environment.items() if v.startswith("/")}
    settings = settings_for(environment, files, tmp_path)
    grace = gateway_service(compose)["stop_grace_period"]
    assert grace.endswith("s")
    assert float(grace.removesuffix("s")) >= shutdown_budget(settings) + 5


def test_demo_gateway_talks_to_the_simulator_with_its_demo_credentials(tmp_path: Path) -> None:
    """PBX_URL names the simulator service and the port its command listens on, with the
    credentials the simulator accepts; the settings start the gateway as they are."""
    compose = load_one(DEMO)
    environment = environment_of(compose)
    settings = settings_for(environment, {}, tmp_path)
    url = urlsplit(settings.pbx_url)
    simulator = compose["services"][str(url.hostname)]
    assert simulator["command"][0] == "simulator"
    assert option(simulator["command"], "--port") == str(url.port)
    assert option(simulator["command"], "--host") == "0.0.0.0"
    assert (environment["PBX_USERNAME"], environment["PBX_PASSWORD"]) == (
        DEMO_USERNAME,
        DEMO_PASSWORD,
    )
    assert compose["services"]["gateway"]["depends_on"] == {
        "simulator": {"condition": "service_healthy"}
    }


def test_demo_healthchecks_probe_each_service_on_its_own_port() -> None:
    """The simulator overrides the image's HEALTHCHECK (which probes the gateway's port)
    with one on its own port; the gateway keeps the image's, on the port serve binds."""
    compose = load_one(DEMO)
    simulator = compose["services"]["simulator"]
    port = option(simulator["command"], "--port")
    assert f"127.0.0.1:{port}/" in simulator["healthcheck"]["test"][-1]
    assert "command" not in compose["services"]["gateway"]
    _, stages = dockerfile_stages()
    healthcheck = stages[-1].all("HEALTHCHECK")[-1].arguments
    assert f"127.0.0.1:{option(image_default_command(), '--port')}/healthz" in healthcheck


def test_production_reads_every_secret_from_a_compose_secret_file(tmp_path: Path) -> None:
    """Each path the settings name is /run/secrets/<name> of a secret the service lists
    and the file declares; the settings then start the gateway (placeholder contents)."""
    compose = load_one(PRODUCTION)
    service = gateway_service(compose)
    environment = environment_of(compose)
    assert "PBX_PASSWORD" not in environment  # a value in the environment shows in inspect
    paths = {name: value for name, value in environment.items() if value.startswith("/")}
    assert set(paths) == {"PBX_PASSWORD_FILE", "PBX_VERIFY_TLS", "GATEWAY_API_KEYS_FILE"}
    for path in paths.values():
        secret = path.removeprefix("/run/secrets/")
        assert secret in service["secrets"] and secret in compose["secrets"], path
    settings_for(environment, {v: PLACEHOLDER_FILES[n] for n, v in paths.items()}, tmp_path)


def test_production_secret_files_are_git_ignored() -> None:
    """The files compose reads the secrets from can never be committed by accident."""
    for secret in load_one(PRODUCTION)["secrets"].values():
        path = (DEPLOY / secret["file"]).resolve().relative_to(REPO)
        run_command("git", "-C", REPO, "check-ignore", "--quiet", "--no-index", path)


def test_production_runs_as_the_image_user_with_limits() -> None:
    """The uid is the image's 10001, and CPU, memory and processes are capped."""
    service = gateway_service(load_one(PRODUCTION))
    _, stages = dockerfile_stages()
    assert service["user"] == stages[-1].all("USER")[-1].arguments == "10001:10001"
    assert set(service["deploy"]["resources"]["limits"]) == {"cpus", "memory", "pids"}
    assert service["restart"] == "unless-stopped"
