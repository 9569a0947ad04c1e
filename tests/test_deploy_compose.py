"""deploy/docker-compose*.yml: real settings, working wiring, the same hardening as Kubernetes;
and the fleet's nginx configuration (deploy/nginx/fleet.conf)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gateway.simulator import DEMO_PASSWORD, DEMO_USERNAME
from tests.deploy_helpers import (
    DEPLOY,
    FLEET_OVERLAY,
    PASSWORD_VARIABLES,
    PLACEHOLDER_FILES,
    REPO,
    Directive,
    Document,
    dockerfile_stages,
    load_one,
    nginx_config,
    option,
    project_version,
    render,
    run_command,
    serve_variable_names,
    settings_for,
    shutdown_budget,
    workload,
)

DEMO = DEPLOY / "docker-compose.yml"
PRODUCTION = DEPLOY / "docker-compose.prod.yml"
FLEET = DEPLOY / "docker-compose.fleet.yml"
COMPOSE_FILES = (DEMO, PRODUCTION, FLEET)
# Images from elsewhere, by service, pinned to a release line. Kubernetes' fleet overlay
# runs the same Redis.
THIRD_PARTY_IMAGES = {"redis": "redis:7.4-alpine", "proxy": "nginx:1.28-alpine"}
REDIS_DEFAULT_PORT = 6379
DOCKER_DNS = "127.0.0.11"
# What an operator would export for docker-compose.prod.yml; the rest keep their defaults.
OPERATOR_ENVIRONMENT = {"PBX_URL": "https://192.168.5.150:8088"}


@pytest.fixture(scope="module")
def serve_names() -> frozenset[str]:
    """Every environment variable `pbx-gateway serve` reads."""
    return serve_variable_names()


@pytest.fixture(scope="module", params=COMPOSE_FILES, ids=lambda path: path.name)
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
    """The try-out runs the simulator and the gateway; production only the gateway; the
    fleet Redis, the simulator, the gateway's replicas and nginx in front of them."""
    assert sorted(load_one(DEMO)["services"]) == ["gateway", "simulator"]
    assert sorted(load_one(PRODUCTION)["services"]) == ["gateway"]
    assert sorted(load_one(FLEET)["services"]) == ["gateway", "proxy", "redis", "simulator"]


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
    """Every service runs pbx-gateway:<pyproject version> (the try-outs build it from the
    repository root with deploy/Dockerfile), or a pinned Redis or nginx."""
    for name, service in compose["services"].items():
        expected = THIRD_PARTY_IMAGES.get(name, f"pbx-gateway:{project_version()}")
        assert interpolate(service["image"], {}) == expected, name
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


@pytest.mark.parametrize("path", [PRODUCTION, FLEET], ids=lambda path: path.name)
def test_secret_files_are_git_ignored(path: Path) -> None:
    """The files compose reads the secrets from can never be committed by accident."""
    for secret in load_one(path)["secrets"].values():
        file = (DEPLOY / secret["file"]).resolve().relative_to(REPO)
        run_command("git", "-C", REPO, "check-ignore", "--quiet", "--no-index", file)


def test_production_runs_as_the_image_user_with_limits() -> None:
    """The uid is the image's 10001, and CPU, memory and processes are capped."""
    service = gateway_service(load_one(PRODUCTION))
    _, stages = dockerfile_stages()
    assert service["user"] == stages[-1].all("USER")[-1].arguments == "10001:10001"
    assert set(service["deploy"]["resources"]["limits"]) == {"cpus", "memory", "pids"}
    assert service["restart"] == "unless-stopped"


# --- the fleet: Redis, the gateway's replicas, nginx ----------------------------------------


@pytest.fixture(scope="module")
def fleet() -> Document:
    """docker-compose.fleet.yml, parsed."""
    return load_one(FLEET)


def _networks(service: Document) -> set[str]:
    networks = service.get("networks", ["default"])
    return set(networks if isinstance(networks, list) else networks.keys())


def _command_port(command: list[str], default: int) -> int:
    return int(option(command, "--port")) if "--port" in command else default


def test_fleet_replicas_share_redis_and_sit_behind_the_proxy(
    fleet: Document, tmp_path: Path
) -> None:
    """Several replicas of one service, none publishing a port or naming its container
    (both would break `--scale`); their settings start the gateway with Redis, whose URL
    names the Redis service, the port it listens on, on a network both are on."""
    gateway = gateway_service(fleet)
    assert gateway["deploy"]["replicas"] >= 3
    assert "ports" not in gateway and "container_name" not in gateway
    environment = environment_of(fleet)
    paths = {n: v for n, v in environment.items() if v.startswith("/")}
    settings = settings_for(
        environment, {v: PLACEHOLDER_FILES[n] for n, v in paths.items()}, tmp_path
    )
    assert settings.redis_url is not None and settings.redis_token_key is not None
    url = urlsplit(settings.redis_url.reveal())
    redis = fleet["services"][str(url.hostname)]
    assert redis["command"][0] == "redis-server"
    assert url.port == _command_port(redis["command"], REDIS_DEFAULT_PORT)
    assert _networks(redis) & _networks(gateway)


def test_fleet_reads_every_secret_from_a_compose_secret_file(fleet: Document) -> None:
    """The PBX password and the token key are files (never values in the environment,
    which `docker inspect` shows), each a secret the service lists and the file declares."""
    service = gateway_service(fleet)
    environment = environment_of(fleet)
    assert not {"PBX_PASSWORD", "GATEWAY_REDIS_TOKEN_KEY"} & environment.keys()
    paths = {name: value for name, value in environment.items() if value.startswith("/")}
    assert set(paths) == {"PBX_PASSWORD_FILE", "GATEWAY_REDIS_TOKEN_KEY_FILE"}
    for path in paths.values():
        secret = path.removeprefix("/run/secrets/")
        assert secret in service["secrets"] and secret in fleet["secrets"], path
        assert fleet["secrets"][secret]["file"].startswith("./secrets/")


def test_fleet_redis_persists_and_is_reachable_only_by_the_replicas(fleet: Document) -> None:
    """Redis keeps an append-only file in its data directory, which is a named volume; it
    publishes no port and sits only on internal networks (no route out); it runs as a
    non-root user; every key the gateway writes expires, so eviction spares none other."""
    redis = fleet["services"]["redis"]
    command = redis["command"]
    assert option(command, "--appendonly") == "yes"
    assert option(command, "--maxmemory-policy").startswith("volatile-")
    directory = option(command, "--dir") if "--dir" in command else "/data"  # the image's
    volumes = {v.split(":")[1]: v.split(":")[0] for v in redis["volumes"]}
    assert volumes[directory] in fleet["volumes"]
    assert "ports" not in redis
    for network in _networks(redis):
        assert fleet["networks"][network]["internal"] is True, network
    assert not redis["user"].startswith("0")
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_fleet_starts_in_order_on_healthchecks(fleet: Document) -> None:
    """Every service has a healthcheck (the gateway's is the image's), and each waits
    for what it needs to be healthy: the replicas for Redis and the PBX, nginx for the
    replicas (nginx must resolve them when it starts)."""
    services = fleet["services"]
    assert "command" not in services["gateway"] and "healthcheck" not in services["gateway"]
    for name in ("redis", "simulator", "proxy"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    healthy = {"condition": "service_healthy"}
    assert services["gateway"]["depends_on"] == {"redis": healthy, "simulator": healthy}
    assert services["proxy"]["depends_on"] == {"gateway": healthy}


def test_fleet_gateway_talks_to_the_simulator_with_its_demo_credentials(fleet: Document) -> None:
    """PBX_URL names the simulator service and the port its command listens on; the user
    is the simulator's, and the instructions write its password into the secret file."""
    environment = environment_of(fleet)
    url = urlsplit(environment["PBX_URL"])
    simulator = fleet["services"][str(url.hostname)]
    assert simulator["command"][0] == "simulator"
    assert option(simulator["command"], "--port") == str(url.port)
    assert _networks(simulator) & _networks(gateway_service(fleet))
    assert environment["PBX_USERNAME"] == DEMO_USERNAME
    secret_file = fleet["secrets"]["pbx_password"]["file"].removeprefix("./")
    assert f"printf '%s\\n' {DEMO_PASSWORD} > deploy/{secret_file}" in FLEET.read_text()


# --- nginx in front of the fleet ------------------------------------------------------------


@pytest.fixture(scope="module")
def nginx() -> Directive:
    """The proxy's configuration file, as the compose file mounts it."""
    return nginx_config(_nginx_file(load_one(FLEET)))


def _nginx_file(fleet: Document) -> Path:
    """The host file mounted where the proxy's entrypoint reads its configuration."""
    proxy = fleet["services"]["proxy"]
    config = option(proxy["entrypoint"], "-c")
    (volume,) = [v for v in proxy["volumes"] if v.split(":")[1] == config]
    source, _, mode = volume.split(":")
    assert mode == "ro"
    path: Path = (DEPLOY / source).resolve()
    assert path.is_file()
    return path


def _seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60}
    number, unit = re.fullmatch(r"(\d+)(ms|s|m)?", value).groups()  # type: ignore[union-attr]
    return int(number) * units[unit or "s"]


def _bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmM]?)", value).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit.lower()]


def test_nginx_listens_where_compose_publishes_and_probes(
    fleet: Document, nginx: Directive
) -> None:
    """The one server listens on the container port compose publishes (on loopback) and
    the healthcheck asks it a location nginx answers itself."""
    proxy = fleet["services"]["proxy"]
    (published,) = proxy["ports"]
    container_port = published.rsplit(":", 1)[1]
    http = nginx.one("http")
    (server,) = http.all("server")
    assert server.one("listen").args == (container_port,)
    probe = proxy["healthcheck"]["test"][-1]
    assert probe.startswith(f"http://127.0.0.1:{container_port}/")
    location = server.one("location", "=", urlsplit(probe).path)
    assert location.one("return").args[0] == "200"


def test_nginx_round_robins_over_every_gateway_replica(fleet: Document, nginx: Directive) -> None:
    """The upstream is the gateway service's name at the port `serve` binds, re-resolved
    through Docker's DNS (so scaled or restarted replicas are followed), with the shared
    zone `resolve` needs; `location /` proxies to it with keep-alive (a WebSocket's upgrade
    passed on instead); and the proxy and the replicas share a network."""
    http = nginx.one("http")
    assert http.one("resolver").args[0] == DOCKER_DNS
    (upstream,) = http.all("upstream")
    (server,) = upstream.all("server")
    serve_port = option(image_default_command(), "--port")
    assert server.args == (f"gateway:{serve_port}", "resolve")
    assert upstream.all("zone")
    location = http.one("server").one("location", "/")
    assert location.one("proxy_pass").args == (f"http://{upstream.args[0]}",)
    assert location.one("proxy_http_version").args == ("1.1",)
    # Keep-alive to the replicas (an empty Connection header) unless a WebSocket upgrades.
    header = location.one("proxy_set_header", "Connection").args[1]
    assert location.one("proxy_set_header", "Upgrade").args == ("Upgrade", "$http_upgrade")
    mapping = http.one("map", "$http_upgrade", header)
    assert mapping.one("").args == ("",) and mapping.one("default").args == ("upgrade",)
    assert _networks(fleet["services"]["proxy"]) & _networks(gateway_service(fleet))
    assert "state" not in _networks(fleet["services"]["proxy"])  # no way to Redis
    version = tuple(
        int(part)
        for part in fleet["services"]["proxy"]["image"].split(":")[1].split("-")[0].split(".")
    )
    assert version >= (1, 27)  # `resolve` in an upstream: nginx 1.27.3, in every 1.28


def test_nginx_sets_the_forwarded_address_the_replicas_trust(
    fleet: Document, nginx: Directive, tmp_path: Path
) -> None:
    """The replicas believe X-Forwarded-For (GATEWAY_TRUSTED_PROXIES), so nginx must
    overwrite it with the address it saw; appending would let a client choose its rate-limit
    identity. Its limits sit above the gateway's: bodies over GATEWAY_MAX_BODY_BYTES get the
    gateway's coded 413, a slow PBX the gateway's deadline answer, not nginx's 413 or 504."""
    environment = environment_of(fleet)
    assert environment["GATEWAY_TRUSTED_PROXIES"]
    location = nginx.one("http").one("server").one("location", "/")
    assert location.one("proxy_set_header", "X-Forwarded-For").args[1] == "$remote_addr"
    paths = {n: v for n, v in environment.items() if v.startswith("/")}
    settings = settings_for(
        environment, {v: PLACEHOLDER_FILES[n] for n, v in paths.items()}, tmp_path
    )
    server = nginx.one("http").one("server")
    assert _bytes(server.one("client_max_body_size").args[0]) > settings.security.max_body_bytes
    assert _seconds(location.one("proxy_read_timeout").args[0]) > settings.request_deadline
    assert _seconds(location.one("proxy_read_timeout").args[0]) > settings.live_transport.keepalive
    assert location.one("proxy_next_upstream").args == ("error", "timeout")  # never non_idempotent


def test_nginx_runs_unprivileged_on_a_read_only_root(fleet: Document, nginx: Directive) -> None:
    """No `user` directive (the container starts as uid 101, not root); in the foreground;
    logs to the container's output; the pid file and every temporary path on the tmpfs."""
    proxy = fleet["services"]["proxy"]
    assert proxy["user"] == "101:101" and proxy["read_only"] is True
    assert not nginx.all("user")
    assert nginx.one("daemon").args == ("off",)
    tmpfs = tuple(path.rstrip("/") + "/" for path in proxy["tmpfs"])
    written = [nginx.one("pid").args[0]] + [
        d.args[0] for d in nginx.walk() if d.name.endswith("_temp_path")
    ]
    assert len(written) == 6  # pid, and client_body, proxy, fastcgi, uwsgi, scgi
    for path in written:
        assert path.startswith(tmpfs), path
    for directive in nginx.walk():
        if directive.name in ("error_log", "access_log") and directive.args[0] != "off":
            assert directive.args[0] in ("/dev/stdout", "/dev/stderr"), directive


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_accepts_the_configuration(tmp_path: Path) -> None:
    """`nginx -t` on the file, with the temporary paths moved under tmp_path and the
    replicas' name (which resolves only on the compose network) replaced by 127.0.0.1;
    an nginx older than 1.27.3 checks it without `resolve`, which it does not know."""
    fleet = load_one(FLEET)
    text = _nginx_file(fleet).read_text(encoding="utf-8")
    version_line = subprocess.run(  # noqa: S603 - a fixed command
        [str(shutil.which("nginx")), "-v"], capture_output=True, text=True, check=True
    ).stderr
    version = tuple(int(p) for p in re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", version_line).groups())  # type: ignore[union-attr]
    text = text.replace("server gateway:", "server 127.0.0.1:")
    if version < (1, 27, 3):
        text = text.replace(" resolve;", ";")
    copy = tmp_path / "nginx.conf"
    (tmpfs,) = fleet["services"]["proxy"]["tmpfs"]
    copy.write_text(text.replace(f"{tmpfs}/", f"{tmp_path}/"), encoding="utf-8")
    run_command("nginx", "-t", "-q", "-p", tmp_path, "-c", copy, "-e", tmp_path / "error.log")


def test_fleet_runs_the_same_redis_as_kubernetes(fleet: Document) -> None:
    """One Redis to know: the compose file and the fleet overlay run the same image."""
    statefulset = workload(render(FLEET_OVERLAY), "pbx-gateway-redis")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert fleet["services"]["redis"]["image"] == container["image"]
