"""``make sbom``: a CycloneDX SBOM of exactly the locked runtime set the image ships."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

from gateway import __version__

ROOT = Path(__file__).resolve().parent.parent


def _locked() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    return {package["name"]: package["version"] for package in lock["package"]}


def test_sbom_lists_the_locked_runtime_set(tmp_path: Path) -> None:
    """CycloneDX 1.5 JSON naming pbx-gateway at this version; every component is in uv.lock
    at its locked version with a purl and hashes; the runtime and redis packages are there,
    the development tools are not."""
    output = tmp_path / "sbom.json"
    subprocess.run(  # noqa: S603 - make, fixed arguments
        ["make", "--no-print-directory", "-s", "sbom", f"SBOM={output}"],  # noqa: S607
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    sbom = json.loads(output.read_text(encoding="utf-8"))
    assert (sbom["bomFormat"], sbom["specVersion"]) == ("CycloneDX", "1.5")
    subject = sbom["metadata"]["component"]
    assert (subject["name"], subject["version"]) == ("pbx-gateway", __version__)
    locked = _locked()
    components = {c["name"]: c for c in sbom["components"]}
    for name, component in components.items():
        assert locked[name] == component["version"], name
        assert component["purl"] == f"pkg:pypi/{name}@{component['version']}"
        assert all(ref["hashes"] for ref in component["externalReferences"]), name
    for runtime in ("strawberry-graphql", "starlette", "uvicorn", "cross-web", "redis"):
        assert runtime in components
    for tool in ("pytest", "mypy", "ruff", "hypothesis", "kubernetes-validate"):
        assert tool not in components
