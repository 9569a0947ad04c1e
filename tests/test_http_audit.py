"""The GraphQL over HTTP audit that ships with the npm package ``graphql-http``, run against
the real gateway.

``tests/http_audit/audit.mjs`` runs ``auditServer`` (all of graphql-http's server audits)
and prints each result; this test starts a gateway, runs the script with Node, and
requires that exactly the audits listed in ``EXPECTED_FAILURES`` fail, each with its
reason written down. A newly passing audit fails the test too, so the list stays true.
Every configuration runs the shipped limits (request rate, PBX-fetch budget, operation
size): none is lifted, since a user's first audit runs with them too.

The npm packages (pinned in ``package-lock.json``) are installed into
``tests/http_audit/node_modules`` on first use; Node and the npm registry are required,
as they are in CI.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

import pytest

from gateway.demo import demo_settings
from gateway.security.config import SecuritySettings
from gateway.security.identity import READ
from tests.gateway_stack import StackFactory
from tests.processes import one_process_at_a_time
from tests.security_helpers import write_keys

AUDIT_DIR: Final = Path(__file__).parent / "http_audit"
AUDIT_COUNT: Final = 61
"""Audits in graphql-http 1.23.1 (the version package-lock.json pins)."""

INTROSPECTION_OFF: Final = (
    "the audit's {variables} checks run `query Type($name: String!) { __type(name: $name) "
    "{ name } }`; __type is introspection, which GATEWAY_INTROSPECTION=false (the "
    "production default) refuses as a validation error: 400 with graphql-response+json, "
    "an errors entry with application/json"
)
EXPECTED_FAILURES: Final[dict[str, dict[str, str]]] = {
    # The demo configuration: no client authentication, introspection on.
    "demo": {},
    # API keys (the audit sends one on every request), introspection on where the audit needs
    # it: every audit passes.
    "api-key": {},
    # Production-shaped: API keys, introspection off.
    "hardened": {
        "2EA1": INTROSPECTION_OFF,
        "28B9": INTROSPECTION_OFF,
        "D6D5": INTROSPECTION_OFF,
        "6A70": INTROSPECTION_OFF,
    },
}


@pytest.fixture(scope="module")
def node_audit() -> list[str]:
    """The command that runs the audit script, its npm packages installed first."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "the GraphQL over HTTP audit needs Node.js and npm on PATH"
    with one_process_at_a_time(AUDIT_DIR):  # each pytest-xdist worker may get here
        if not (AUDIT_DIR / "node_modules" / "graphql-http" / "package.json").is_file():
            subprocess.run(  # noqa: S603 (a fixed command line, no user input)
                [npm, "install", "--no-audit", "--no-fund", "--prefix", str(AUDIT_DIR)],
                check=True,
                cwd=AUDIT_DIR,
                timeout=300,
                capture_output=True,
            )
    return [node, str(AUDIT_DIR / "audit.mjs")]


async def run_audit(command: list[str], url: str, headers: dict[str, str]) -> list[Any]:
    """Run the audit against ``url`` without blocking the loop that serves the gateway."""
    environ = {**os.environ, "GRAPHQL_AUDIT_HEADERS": json.dumps(headers)}
    process = await asyncio.create_subprocess_exec(
        *command,
        url,
        cwd=AUDIT_DIR,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    results: list[Any] = json.loads(out)
    return results


@pytest.mark.parametrize("configuration", sorted(EXPECTED_FAILURES))
async def test_graphql_over_http_audit(
    gateway_stack: StackFactory, node_audit: list[str], tmp_path: Path, configuration: str
) -> None:
    """graphql-http's server audit: every audit passes except the justified ones."""
    headers: dict[str, str] = {}
    if configuration == "demo":
        security = demo_settings("http://pbx.invalid").security  # the shipped demo limits
    else:
        stored, plain = write_keys(tmp_path, {"auditor": [READ]})
        introspection = configuration == "api-key"
        security = SecuritySettings(auth="api-key", api_keys=stored, introspection=introspection)
        headers = {"X-API-Key": plain["auditor"]}
    stack = await gateway_stack(security=security)
    results = await run_audit(node_audit, f"{stack.gateway.base_url}/graphql", headers)
    failed = {r["id"]: f"{r['name']}: {r['reason']}" for r in results if r["status"] != "ok"}
    passed = [r["id"] for r in results if r["status"] == "ok"]
    print(f"\n{configuration}: {len(passed)} of {len(results)} audits pass; failing: {failed}")
    assert len(results) == AUDIT_COUNT
    assert sorted(failed) == sorted(EXPECTED_FAILURES[configuration]), failed
