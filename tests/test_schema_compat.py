"""The schema checks of ``scripts/check-schema`` (graphql-inspector), both directions.

The repository itself must pass: ``schema.graphql`` breaks nothing since the last release
that ``CHANGELOG.md`` does not list as deliberate, and the web example's operations are
valid. On temp copies the check is shown to fail on an unlisted breaking change and to pass
a listed one, a non-breaking one, and to refuse an operation the schema cannot answer.
Node and the npm registry are required (the tool is installed on first use).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import one_process_at_a_time

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check-schema"
RELEASED = ROOT / "schema" / "released" / "0.1.0.graphql"
REMOVED_NAME = "Field 'name' was removed from object type 'Conference'"


@pytest.fixture(scope="module", autouse=True)
def _tool_installed() -> None:
    with one_process_at_a_time(ROOT / "tools" / "schema-check"):  # pytest-xdist's workers
        done = subprocess.run(  # noqa: S603 - fixed argv
            [sys.executable, str(SCRIPT), "--install"], capture_output=True, text=True, timeout=600
        )
    assert done.returncode == 0, done.stderr


def run_check(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """scripts/check-schema with ``args``, its output captured."""
    return subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def changelog(tmp_path: Path, deliberate: list[str], *, section: str = "Unreleased") -> Path:
    """A CHANGELOG.md listing ``deliberate`` under ``section`` / Breaking (deliberate)."""
    lines = [f"- `{message}`: a test says so." for message in deliberate]
    text = "\n".join(
        [
            "# Changelog",
            "",
            "## [Unreleased]",
            "",
            "### Added",
            "- Something.",
            "",
            f"## [{section}]" if section != "Unreleased" else "",
            "### Breaking (deliberate)",
            *lines,
            "",
            "## [0.0.1] - 2026-01-01",
            "",
        ]
    )
    path = tmp_path / "CHANGELOG.md"
    path.write_text(text, encoding="utf-8")
    return path


def schema_without_name(tmp_path: Path) -> Path:
    """The released schema with ``Conference.name`` removed: a breaking change."""
    text = RELEASED.read_text(encoding="utf-8")
    cut = text.replace('  """The room\'s display name."""\n  name: String!\n', "")
    assert cut != text
    path = tmp_path / "schema.graphql"
    path.write_text(cut, encoding="utf-8")
    return path


def test_schema_check_repository_passes() -> None:
    """schema.graphql vs the last release passes (every break listed) and the web example
    is valid against it."""
    done = run_check()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "operations in 1 file(s)" in done.stderr


def test_schema_check_fails_on_unlisted_breaking_change(tmp_path: Path) -> None:
    """A removed field not listed in the changelog fails, quoting the change ready to paste."""
    done = run_check(
        "--released",
        RELEASED,
        "--schema",
        schema_without_name(tmp_path),
        "--changelog",
        changelog(tmp_path, []),
        "--operations",
    )
    assert done.returncode == 1
    assert f"- `{REMOVED_NAME}`" in done.stdout
    assert "not listed" in done.stderr


def test_schema_check_passes_listed_breaking_change(tmp_path: Path) -> None:
    """The same change, quoted under [Unreleased] / Breaking (deliberate), passes."""
    done = run_check(
        "--released",
        RELEASED,
        "--schema",
        schema_without_name(tmp_path),
        "--changelog",
        changelog(tmp_path, [REMOVED_NAME]),
        "--operations",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 breaking, 1 of them listed" in done.stderr


def test_schema_check_listing_under_a_release_does_not_count(tmp_path: Path) -> None:
    """Only [Unreleased] lists deliberate breaks: a line under an older release is ignored."""
    done = run_check(
        "--released",
        RELEASED,
        "--schema",
        schema_without_name(tmp_path),
        "--changelog",
        changelog(tmp_path, [REMOVED_NAME], section="0.0.2"),
        "--operations",
    )
    assert done.returncode == 1


def test_schema_check_passes_non_breaking_change(tmp_path: Path) -> None:
    """A new field is not breaking: passes with nothing listed."""
    text = RELEASED.read_text(encoding="utf-8").replace(
        "type Conference {\n", 'type Conference {\n  """New."""\n  extra: String\n\n', 1
    )
    schema = tmp_path / "schema.graphql"
    schema.write_text(text, encoding="utf-8")
    done = run_check(
        "--released",
        RELEASED,
        "--schema",
        schema,
        "--changelog",
        changelog(tmp_path, []),
        "--operations",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 breaking" in done.stderr


def test_schema_check_refuses_invalid_web_operation(tmp_path: Path) -> None:
    """A gql document asking for a field the schema lacks fails the operations check."""
    page = tmp_path / "page.js"
    page.write_text("const Q = gql`\n  query Q { conferences { number colour } }\n`;\n", "utf-8")
    done = run_check("--operations", page)
    assert done.returncode == 1
    assert "colour" in done.stderr
