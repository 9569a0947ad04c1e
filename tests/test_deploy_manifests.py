"""deploy/kubernetes: valid against Kubernetes' schemas, and wired together correctly.

Everything is checked twice where it matters: on the base as it is and on the simulator
overlay as kustomize renders it (tests/deploy_helpers.render, cross-checked against
``kubectl kustomize`` where kubectl is installed).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from gateway.simulator import DEMO_PASSWORD, DEMO_USERNAME
from tests.deploy_helpers import (
    BASE,
    KUBERNETES,
    PASSWORD_VARIABLES,
    PLACEHOLDER_FILES,
    SIMULATOR_OVERLAY,
    Document,
    find,
    gateway_container,
    gateway_environment,
    kustomization,
    load_documents,
    load_one,
    option,
    pod_templates,
    project_version,
    render,
    run_command,
    secret_files,
    serve_variable_names,
    settings_for,
    shutdown_budget,
)

# The oldest Kubernetes minor the manifests promise to work on (deploy/README.md), and
# the newest whose schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
KUSTOMIZATIONS = (BASE, SIMULATOR_OVERLAY)
SECRET_EXAMPLE = BASE / "secret.example.yaml"
SECRETS_MOUNT = "/run/secrets/pbx-gateway"
UID = 10001


@pytest.fixture(scope="module")
def serve_names() -> frozenset[str]:
    """Every environment variable `pbx-gateway serve` reads."""
    return serve_variable_names()


@pytest.fixture(scope="module", params=KUSTOMIZATIONS, ids=lambda path: path.name)
def rendered(request: pytest.FixtureRequest) -> list[Document]:
    """The base, and the simulator overlay, as kustomize renders them."""
    directory: Path = request.param
    return render(directory)


def _yaml_files() -> list[Path]:
    return sorted(KUBERNETES.rglob("*.yaml"))


def _patch_files() -> set[Path]:
    return {
        (directory / patch["path"]).resolve()
        for directory in KUSTOMIZATIONS
        for patch in kustomization(directory).get("patches", [])
    }


def _standalone_documents() -> list[tuple[str, Document]]:
    """Every complete resource in a file: all YAML but kustomizations and patches."""
    patches = _patch_files()
    return [
        (str(path.relative_to(KUBERNETES)), document)
        for path in _yaml_files()
        if path.name != "kustomization.yaml" and path.resolve() not in patches
        for document in load_documents(path)
    ]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifest_files_validate_against_kubernetes_schema(version: str) -> None:
    """Every resource written in a file, secret.example.yaml included, is a valid object
    (strict: an unknown or misspelt field fails)."""
    documents = _standalone_documents()
    assert len(documents) >= 7
    for where, document in documents:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            pytest.fail(f"{where}: {document['kind']} at {path}: {exc.message}")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_manifests_validate_against_kubernetes_schema(
    rendered: list[Document], version: str
) -> None:
    """What `kubectl apply -k` would send, patches applied, is valid too."""
    for document in rendered:
        kubernetes_validate.validate(document, version, strict=True)


def test_kustomizations_list_files_that_exist() -> None:
    """Every resource, patch and generator file a kustomization names is there."""
    for directory in KUSTOMIZATIONS:
        spec = kustomization(directory)
        named = list(spec.get("resources", [])) + [p["path"] for p in spec.get("patches", [])]
        for generator in spec.get("secretGenerator", []):
            named += [entry.rpartition("=")[2] for entry in generator.get("files", [])]
        for entry in named:
            assert (directory / entry).exists(), f"{directory.name}: {entry} does not exist"


def test_every_manifest_file_is_used() -> None:
    """No YAML file lies around unreferenced, except the documented Secret example."""
    used = {directory / "kustomization.yaml" for directory in KUSTOMIZATIONS} | _patch_files()
    for directory in KUSTOMIZATIONS:
        used |= {(directory / r).resolve() for r in kustomization(directory)["resources"]}
    unused = {p for p in _yaml_files() if p.resolve() not in used} - {SECRET_EXAMPLE}
    assert not unused


def test_overlay_patches_target_resources_of_the_base() -> None:
    """Each patch names a kind and name that the base defines (else kustomize fails)."""
    base = render(BASE)
    for patch in kustomization(SIMULATOR_OVERLAY)["patches"]:
        body = load_one(SIMULATOR_OVERLAY / patch["path"])
        find(base, body["kind"], body["metadata"]["name"])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda path: path.name)
def test_render_matches_kubectl_kustomize(directory: Path) -> None:
    """The Python rendering these tests check is what the real kustomize produces."""
    output = run_command("kubectl", "kustomize", directory, timeout=60).stdout
    real = [document for document in yaml.safe_load_all(output) if document]

    def key(document: Document) -> tuple[str, str]:
        return document["kind"], document["metadata"]["name"]

    assert sorted(real, key=key) == sorted(render(directory), key=key)


def test_secret_example_is_not_applied_and_matches_what_the_gateway_reads() -> None:
    """The example is left out of the base, and names the Secret and the keys that the
    base's settings read from the mount."""
    assert SECRET_EXAMPLE.name not in kustomization(BASE)["resources"]
    base = render(BASE)
    volumes = find(base, "Deployment", "pbx-gateway")["spec"]["template"]["spec"]["volumes"]
    example = load_one(SECRET_EXAMPLE)
    assert [v["secret"]["secretName"] for v in volumes] == [example["metadata"]["name"]]
    files = [v for v in gateway_environment(base).values() if v.startswith(SECRETS_MOUNT)]
    assert sorted(path.rpartition("/")[2] for path in files) == sorted(secret_files(example))


def test_selectors_match_pod_labels(rendered: list[Document]) -> None:
    """Each Deployment selects its own pods, and each Service and PodDisruptionBudget
    selects exactly one Deployment's pods."""
    templates = dict(pod_templates(rendered))
    for name, template in templates.items():
        selector = find(rendered, "Deployment", name)["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template["metadata"]["labels"].items()
    for resource in rendered:
        if resource["kind"] in ("Service", "PodDisruptionBudget"):
            selector = resource["spec"]["selector"]
            selector = selector.get("matchLabels", selector)  # a PDB's is a LabelSelector
            chosen = [
                name
                for name, template in templates.items()
                if selector.items() <= template["metadata"]["labels"].items()
            ]
            assert len(chosen) == 1, f"{resource['kind']} {resource['metadata']['name']}"


def test_services_target_a_port_their_pods_listen_on(rendered: list[Document]) -> None:
    """A Service's targetPort is a named (or numbered) port of the selected container,
    and that container's command line listens on it."""
    templates = dict(pod_templates(rendered))
    for service in (r for r in rendered if r["kind"] == "Service"):
        labels = service["spec"]["selector"]
        (template,) = [
            t for t in templates.values() if labels.items() <= t["metadata"]["labels"].items()
        ]
        for port in service["spec"]["ports"]:
            listening = [
                (container, declared)
                for container in template["spec"]["containers"]
                for declared in container["ports"]
                if port["targetPort"] in (declared.get("name"), declared["containerPort"])
            ]
            assert len(listening) == 1, service["metadata"]["name"]
            container, declared = listening[0]
            assert option(container["args"], "--port") == str(declared["containerPort"])
            assert option(container["args"], "--host") == "0.0.0.0"


def test_gateway_probes_health_endpoints_on_its_port(rendered: list[Document]) -> None:
    """Startup and liveness probe /healthz, readiness /readyz, on the port serve binds."""
    container = gateway_container(rendered)
    (http,) = [p for p in container["ports"] if p["name"] == "http"]
    assert str(http["containerPort"]) == option(container["args"], "--port")
    paths = {
        probe: (container[probe]["httpGet"]["path"], container[probe]["httpGet"]["port"])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert paths == {
        "startupProbe": ("/healthz", "http"),
        "livenessProbe": ("/healthz", "http"),
        "readinessProbe": ("/readyz", "http"),
    }


def test_gateway_runs_one_replica() -> None:
    """One replica by default: without Redis each would hold its own PBX session."""
    assert find(render(BASE), "Deployment", "pbx-gateway")["spec"]["replicas"] == 1


def test_every_container_runs_hardened(rendered: list[Document]) -> None:
    """Non-root uid 10001, no privilege escalation, read-only root, no capabilities,
    RuntimeDefault seccomp, no service-account token: for every container, init too."""
    for name, template in pod_templates(rendered):
        pod = template["spec"]
        assert pod["automountServiceAccountToken"] is False, name
        containers = pod["containers"] + pod.get("initContainers", [])
        for container in containers:
            effective = pod["securityContext"] | container.get("securityContext", {})
            where = f"{name}/{container['name']}"
            assert effective["runAsNonRoot"] is True, where
            assert effective["runAsUser"] == UID, where
            assert effective["allowPrivilegeEscalation"] is False, where
            assert effective["readOnlyRootFilesystem"] is True, where
            assert effective.get("privileged", False) is False, where
            assert effective["capabilities"] == {"drop": ["ALL"]}, where
            assert effective["seccompProfile"] == {"type": "RuntimeDefault"}, where


def test_every_container_has_requests_and_limits(rendered: list[Document]) -> None:
    """CPU and memory requests and limits everywhere, so no pod starves its node."""
    for name, template in pod_templates(rendered):
        pod = template["spec"]
        for container in pod["containers"] + pod.get("initContainers", []):
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert set(resources[kind]) == {"cpu", "memory"}, f"{name}: {kind}"


def test_images_carry_the_project_version(rendered: list[Document]) -> None:
    """Every container runs pbx-gateway:<pyproject version>, so a release bumps them."""
    for _, template in pod_templates(rendered):
        pod = template["spec"]
        for container in pod["containers"] + pod.get("initContainers", []):
            assert container["image"] == f"pbx-gateway:{project_version()}"


def test_gateway_environment_names_are_real_settings(
    rendered: list[Document], serve_names: frozenset[str]
) -> None:
    """Every variable the ConfigMap and the Deployment set is one serve reads (a typo
    would be ignored silently), and exactly one of them is a password source."""
    environment = gateway_environment(rendered)
    assert set(environment) - serve_names == set()
    assert [name for name in environment if name in PASSWORD_VARIABLES] == ["PBX_PASSWORD_FILE"]


def test_gateway_settings_are_accepted(rendered: list[Document], tmp_path: Path) -> None:
    """The rendered settings start the gateway: every value parses, and every file they
    name is a key of the Secret mounted there (the overlay generates it; the base's is
    created by hand, as secret.example.yaml shows, so placeholder contents stand in)."""
    environment = gateway_environment(rendered)
    generated = [r for r in rendered if r["kind"] == "Secret"]
    keys = secret_files(generated[0] if generated else load_one(SECRET_EXAMPLE))
    files: dict[str, bytes] = {}
    for name, value in environment.items():
        if value.startswith("/"):
            assert value.startswith(SECRETS_MOUNT + "/"), f"{name} points outside the Secret"
            key = value.removeprefix(SECRETS_MOUNT + "/")
            assert key in keys, f"{name} names {key!r}, which the Secret does not hold"
            files[value] = keys[key] if generated else PLACEHOLDER_FILES[name]
    settings_for(environment, files, tmp_path)


def test_secret_mount_is_read_only_group_readable_and_rotatable(
    rendered: list[Document],
) -> None:
    """The Secret is mounted read-only, 0440 for the fsGroup, and without subPath (a
    subPath mount never sees a rotated password)."""
    pod = find(rendered, "Deployment", "pbx-gateway")["spec"]["template"]["spec"]
    (mount,) = gateway_container(rendered)["volumeMounts"]
    (volume,) = pod["volumes"]
    assert (mount["mountPath"], mount["readOnly"], "subPath" in mount) == (
        SECRETS_MOUNT,
        True,
        False,
    )
    assert (volume["secret"]["defaultMode"], pod["securityContext"]["fsGroup"]) == (0o440, UID)


def test_termination_grace_covers_graceful_stop_and_logout(
    rendered: list[Document], tmp_path: Path
) -> None:
    """The kubelet's SIGKILL comes only after preStop, the request grace and the PBX
    logout could all have finished."""
    pod = find(rendered, "Deployment", "pbx-gateway")["spec"]["template"]["spec"]
    environment = gateway_environment(rendered)
    files = {v: PLACEHOLDER_FILES[n] for n, v in environment.items() if v.startswith("/")}
    settings = settings_for(environment, files, tmp_path)
    pre_stop = gateway_container(rendered)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    budget = float(pre_stop[1]) + shutdown_budget(settings)
    assert pod["terminationGracePeriodSeconds"] >= budget + 5


def test_simulator_overlay_points_the_gateway_at_the_simulator() -> None:
    """PBX_URL names the simulator's Service and port, with the credentials the simulator
    accepts, over plain HTTP and without client authentication."""
    rendered = render(SIMULATOR_OVERLAY)
    environment = gateway_environment(rendered)
    url = urlsplit(environment["PBX_URL"])
    service = find(rendered, "Service", str(url.hostname))
    assert url.scheme == "http"
    assert url.port in [port["port"] for port in service["spec"]["ports"]]
    simulator = find(rendered, "Deployment", "pbx-simulator")
    (container,) = simulator["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "simulator"
    secret = find(rendered, "Secret", "pbx-gateway")
    assert environment["PBX_USERNAME"] == DEMO_USERNAME
    password_file = environment["PBX_PASSWORD_FILE"].rpartition("/")[2]
    assert secret_files(secret)[password_file].decode() == DEMO_PASSWORD
    assert environment["GATEWAY_AUTH"] == "none"


def test_simulator_overlay_waits_for_the_simulator_it_names() -> None:
    """The init container waits for the same host and port that PBX_URL names."""
    rendered = render(SIMULATOR_OVERLAY)
    url = urlsplit(gateway_environment(rendered)["PBX_URL"])
    pod = find(rendered, "Deployment", "pbx-gateway")["spec"]["template"]["spec"]
    (wait,) = pod["initContainers"]
    assert f'("{url.hostname}", {url.port})' in wait["command"][-1]
