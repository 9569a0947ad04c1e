"""Readers for the files under deploy/, shared by the tests/test_deploy_*.py modules.

- ``serve_variable_names()``: every environment variable ``pbx-gateway serve`` reads, found
  by running the real command with a recording environment (nothing is listed by hand).
- ``render()``: the little of kustomize that deploy/kubernetes uses (resources, strategic
  merge patches, a secretGenerator), so the overlay can be checked without kubectl; it
  refuses any other kustomize feature rather than render it wrongly.
- ``dockerfile_stages()``: deploy/Dockerfile as stages of (instruction, arguments).
- ``nginx_config()``: deploy/nginx/*.conf as a tree of directives.
- ``settings_for()``: ``Settings.from_environ`` on a deploy file's environment, with the
  secret files it names written to a temporary directory.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml

from gateway import commands, serving
from gateway.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
BASE = KUBERNETES / "base"
SIMULATOR_OVERLAY = KUBERNETES / "overlays" / "simulator"
FLEET_OVERLAY = KUBERNETES / "overlays" / "fleet"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
UV = REPO / ".venv-tools" / "bin" / "uv"  # the Makefile's pinned uv (make test installs it)

Document = dict[str, Any]


def project_version() -> str:
    """pyproject's version, which the image tags in deploy/ must carry."""
    with (REPO / "pyproject.toml").open("rb") as file:
        version: str = tomllib.load(file)["project"]["version"]
    return version


def run_command(
    *argv: str | Path,
    timeout: float = 300,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a fixed command line (the program found on PATH), fail with its output."""
    program = shutil.which(argv[0])
    assert program is not None, f"{argv[0]} is not installed"
    result = subprocess.run(  # noqa: S603 - argument lists the tests build, no shell
        [program, *map(str, argv[1:])],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )
    assert result.returncode == 0, f"{argv} exited {result.returncode}:\n{result.stderr}"
    return result


def load_documents(path: Path) -> list[Document]:
    """Every non-empty YAML document in ``path``."""
    with path.open(encoding="utf-8") as file:
        return [document for document in yaml.safe_load_all(file) if document]


def load_one(path: Path) -> Document:
    """The single YAML document in ``path``."""
    documents = load_documents(path)
    assert len(documents) == 1, f"{path} should hold exactly one document"
    return documents[0]


# --- the variables `pbx-gateway serve` reads ---------------------------------------------


class _RecordingEnviron(dict[str, str]):
    """An environment that remembers every name looked up in it."""

    def __init__(self, values: Mapping[str, str], seen: set[str]) -> None:
        super().__init__(values)
        self.seen = seen

    def get(self, key: str, default: Any = None) -> Any:
        self.seen.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.seen.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.seen.add(key)
        return super().__contains__(key)


# Enough for serve to start; GATEWAY_AUTH is ignored by a gateway without client auth.
_MINIMAL_ENVIRON = {
    "PBX_URL": "https://pbx.test:8088",
    "PBX_USERNAME": "api",
    "PBX_PASSWORD": "secret",
    "GATEWAY_AUTH": "none",
}
# Other authentication modes read more variables before they fail for want of files.
_MORE_PASSES = ({"GATEWAY_AUTH": "api-key"}, {"GATEWAY_AUTH": "jwt"})


def serve_variable_names() -> frozenset[str]:
    """The names `pbx-gateway serve` looks up, with the server's start stubbed out (serve
    hands its main coroutine to ``serving.run``; the stub closes it unstarted, so nothing
    binds a port or blocks)."""
    seen: set[str] = set()
    served: list[object] = []

    def record(main: Coroutine[Any, Any, None]) -> None:
        main.close()
        served.append(main)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(serving, "run", record)
        patch.setattr(uvicorn, "run", lambda app, **options: served.append(app))
        patch.setattr(logging, "basicConfig", lambda **options: None)
        for overrides in ({}, *_MORE_PASSES):
            patch.setattr(os, "environ", _RecordingEnviron(_MINIMAL_ENVIRON | overrides, seen))
            status = commands.run_serve(argparse.Namespace(host="127.0.0.1", port=8000))
            if not overrides:
                assert (status, len(served)) == (0, 1), "serve did not start with the minimum"
    return frozenset(name for name in seen if re.fullmatch(r"[A-Z][A-Z0-9_]*", name))


# --- kustomize, the parts deploy/kubernetes uses ------------------------------------------

_KUSTOMIZATION_KEYS = frozenset({"apiVersion", "kind", "resources", "patches", "secretGenerator"})


def kustomization(directory: Path) -> Document:
    """``directory``'s kustomization.yaml."""
    return load_one(directory / "kustomization.yaml")


def render(directory: Path) -> list[Document]:
    """What ``kubectl kustomize directory`` prints, for the features deploy/ uses."""
    spec = kustomization(directory)
    unsupported = set(spec) - _KUSTOMIZATION_KEYS
    assert not unsupported, f"extend tests/deploy_helpers.render() for {sorted(unsupported)}"
    resources: list[Document] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        resources += render(path) if path.is_dir() else load_documents(path)
    for generator in spec.get("secretGenerator", []):
        resources.append(_generate_secret(directory, generator))
    for patch in spec.get("patches", []):
        assert set(patch) == {"path"}, "only strategic-merge patches named by path are rendered"
        body = load_one(directory / patch["path"])
        strategic_merge(find(resources, body["kind"], body["metadata"]["name"]), body)
    return resources


def find(resources: list[Document], kind: str, name: str) -> Document:
    """The one resource of ``kind`` named ``name``."""
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name!r}, found {len(found)}"
    return found[0]


def strategic_merge(target: Document, patch: Document) -> None:
    """Kubernetes' strategic merge, for maps and for lists of named items (containers,
    env, volumes): a null removes a key, lists of named items merge by name, any other
    value replaces."""
    for key, value in patch.items():
        assert not key.startswith("$"), f"patch directive {key} is not rendered here"
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            strategic_merge(target[key], value)
        elif _named_items(value) and _named_items(target.get(key)):
            by_name = {item["name"]: item for item in target[key]}
            for item in value:
                if item["name"] in by_name:
                    strategic_merge(by_name[item["name"]], item)
                else:
                    target[key].append(item)
        else:
            target[key] = value


def _named_items(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(i, dict) and "name" in i for i in value)


def _generate_secret(directory: Path, generator: Document) -> Document:
    unsupported = set(generator) - {"name", "literals", "files", "options", "type"}
    assert not unsupported, f"secretGenerator fields {sorted(unsupported)} are not rendered"
    # With a hash suffix kustomize also renames every reference; not rendered here.
    assert generator.get("options", {}).get("disableNameSuffixHash") is True
    data: dict[str, str] = {}
    for literal in generator.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = _b64(value.encode())
    for entry in generator.get("files", []):
        key, _, path = entry.rpartition("=")
        data[key or Path(path).name] = _b64((directory / path).read_bytes())
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": generator["name"]},
        "type": generator.get("type", "Opaque"),
        "data": data,
    }


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def secret_files(secret: Document) -> dict[str, bytes]:
    """A Secret's keys and decoded contents (``data`` and ``stringData``)."""
    files = {key: base64.b64decode(value) for key, value in secret.get("data", {}).items()}
    files |= {key: value.encode() for key, value in secret.get("stringData", {}).items()}
    return files


WORKLOAD_KINDS = ("Deployment", "StatefulSet")


def pod_templates(resources: list[Document]) -> Iterator[tuple[str, Document]]:
    """(name, pod template) for every Deployment and StatefulSet."""
    for resource in resources:
        if resource["kind"] in WORKLOAD_KINDS:
            yield resource["metadata"]["name"], resource["spec"]["template"]


def workload(resources: list[Document], name: str) -> Document:
    """The one Deployment or StatefulSet named ``name``."""
    found = [r for r in resources if r["kind"] in WORKLOAD_KINDS and r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one workload {name!r}, found {len(found)}"
    return found[0]


def selected(selector: Mapping[str, str], resources: list[Document]) -> list[str]:
    """The workloads whose pods carry every label of ``selector``."""
    return [
        name
        for name, template in pod_templates(resources)
        if selector.items() <= template["metadata"]["labels"].items()
    ]


def gateway_environment(resources: list[Document]) -> dict[str, str]:
    """The gateway container's environment: its ConfigMap, then its own env entries."""
    container = gateway_container(resources)
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config_map = find(resources, "ConfigMap", source["configMapRef"]["name"])
        environment |= config_map["data"]
    for variable in container.get("env", []):
        environment[variable["name"]] = variable["value"]
    return environment


def gateway_container(resources: list[Document]) -> Document:
    """The ``gateway`` container of the ``pbx-gateway`` Deployment."""
    spec = find(resources, "Deployment", "pbx-gateway")["spec"]["template"]["spec"]
    containers = [c for c in spec["containers"] if c["name"] == "gateway"]
    assert len(containers) == 1
    container: Document = containers[0]
    return container


def option(arguments: list[str], name: str) -> str:
    """The value after ``name`` in a command line such as ``serve --port 8000``."""
    assert name in arguments, f"{name} missing from {arguments}"
    return arguments[arguments.index(name) + 1]


# --- settings from a deploy file's environment --------------------------------------------

PASSWORD_VARIABLES = frozenset(
    {"PBX_PASSWORD", "PBX_PASSWORD_FILE", "PBX_PASSWORD_MD5", "PBX_PASSWORD_MD5_FILE"}
)
# Plausible contents for secret files whose real content the repository never holds.
PLACEHOLDER_FILES = {
    "GATEWAY_REDIS_URL_FILE": b"redis://:a-password@redis.test:6379/0\n",
    "GATEWAY_REDIS_TOKEN_KEY_FILE": base64.urlsafe_b64encode(bytes(32)) + b"\n",  # Fernet
    "PBX_PASSWORD_FILE": b"a password\n",
    "PBX_VERIFY_TLS": b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
    "GATEWAY_API_KEYS_FILE": json.dumps(
        {"keys": [{"name": "test", "sha256": "0" * 64, "scopes": ["conferences:read"]}]}
    ).encode(),
}


def settings_for(
    environment: Mapping[str, str], files: Mapping[str, bytes], tmp_path: Path
) -> Settings:
    """``Settings.from_environ`` on ``environment``, where every absolute path a variable
    names is first written under ``tmp_path`` from ``files`` (keyed by that path)."""
    local: dict[str, str] = {}
    for name, value in environment.items():
        if value.startswith("/"):
            assert value in files, f"{name} names {value}, which nothing provides"
            copy = tmp_path / value.lstrip("/")
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(files[value])
            value = str(copy)
        local[name] = value
    return Settings.from_environ(local)


def shutdown_budget(settings: Settings) -> float:
    """Seconds from SIGTERM until the gateway has logged out, at worst: the grace for
    in-flight requests, up to 5 s for a login under way, then the logout itself (connect
    at most 5 s, read at most PBX_TIMEOUT). See PbxSession.close."""
    return settings.shutdown_grace + 5 + 5 + settings.pbx_timeout


# --- Dockerfile ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: ``keyword`` upper-cased, ``arguments`` as written."""

    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """The JSON array form (``["a", "b"]``) of the arguments."""
        words: list[str] = json.loads(self.arguments)
        return words

    def flags(self) -> tuple[dict[str, str], str]:
        """Leading ``--name=value`` flags and the rest, as in ``COPY --from=builder a b``."""
        flags: dict[str, str] = {}
        rest = self.arguments
        while match := re.match(r"--([a-z-]+)=(\S+)\s+", rest):
            flags[match[1]] = match[2]
            rest = rest[match.end() :]
        return flags, rest


@dataclass(frozen=True)
class Stage:
    """A ``FROM ... AS name`` stage and its instructions."""

    name: str
    base: str
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[Instruction]:
        """This stage's instructions of one kind, in order."""
        return [i for i in self.instructions if i.keyword == keyword]


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Instructions with comments dropped and continuation lines joined."""
    instructions: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):  # also inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), " ".join(arguments.split())))
        pending = ""
    return instructions


def dockerfile_stages(path: Path = DOCKERFILE) -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults and the stages of ``path``."""
    arguments: dict[str, str] = {}
    stages: list[Stage] = []
    current: list[Instruction] | None = None
    for instruction in dockerfile_instructions(path.read_text(encoding="utf-8")):
        if instruction.keyword == "FROM":
            base, _, name = instruction.arguments.partition(" AS ")
            current = []
            stages.append(Stage(name.strip(), base.strip(), ()))
        elif current is None:
            if instruction.keyword == "ARG":
                name, _, default = instruction.arguments.partition("=")
                arguments[name] = default
        else:
            current.append(instruction)
            stages[-1] = Stage(stages[-1].name, stages[-1].base, tuple(current))
    return arguments, stages


def builder_sources(stage: Stage) -> list[str]:
    """What a stage COPYs from the build context (the repository root)."""
    sources: list[str] = []
    for copy in stage.all("COPY"):
        flags, rest = copy.flags()
        if "from" not in flags:
            sources += shlex.split(rest)[:-1]
    return sources


# --- nginx ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Directive:
    """One nginx directive: its name, its arguments (quotes removed), its block if any."""

    name: str
    args: tuple[str, ...]
    block: tuple[Directive, ...] | None = None

    def all(self, name: str) -> list[Directive]:
        """The directives named ``name`` directly in this block."""
        return [d for d in self.block or () if d.name == name]

    def one(self, name: str, *args: str) -> Directive:
        """The single directive ``name`` (whose arguments start with ``args``) here."""
        found = [d for d in self.all(name) if d.args[: len(args)] == args]
        assert len(found) == 1, f"expected one {name} {' '.join(args)}, found {len(found)}"
        return found[0]

    def walk(self) -> Iterator[Directive]:
        """Every directive inside this block, depth first."""
        for directive in self.block or ():
            yield directive
            yield from directive.walk()


_NGINX_TOKEN = re.compile(
    r"""\s+|#[^\n]*|"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|([{};])|([^\s{};"'#]+)"""
)


def nginx_config(path: Path) -> Directive:
    """An nginx configuration file as the tree of its directives (the root is ``main``);
    enough of nginx's grammar for deploy/nginx: words, quoted strings, blocks, comments."""
    stack: list[list[Directive]] = [[]]
    words: list[str] = []
    names: list[tuple[str, tuple[str, ...]]] = []
    text = path.read_text(encoding="utf-8")
    position = 0
    while position < len(text):
        match = _NGINX_TOKEN.match(text, position)
        assert match, f"{path.name}: cannot read from {text[position : position + 40]!r}"
        position = match.end()
        double, single, punctuation, word = match.groups()
        if punctuation == ";":
            assert words, f"{path.name}: an empty directive"
            stack[-1].append(Directive(words[0], tuple(words[1:])))
            words = []
        elif punctuation == "{":
            assert words, f"{path.name}: a block without a name"
            names.append((words[0], tuple(words[1:])))
            stack.append([])
            words = []
        elif punctuation == "}":
            assert not words and names, f"{path.name}: unbalanced braces or a missing ';'"
            name, args = names.pop()
            block = tuple(stack.pop())
            stack[-1].append(Directive(name, args, block))
        elif double is not None or single is not None:
            words.append(bytes(double or single or "", "utf-8").decode("unicode_escape"))
        elif word is not None:
            words.append(word)
    assert not words and not names and len(stack) == 1, f"{path.name}: unterminated"
    return Directive("main", (), tuple(stack[0]))
