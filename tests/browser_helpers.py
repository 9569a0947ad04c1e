"""Headless Chromium for the tests: ``tests/browser/run.mjs`` run by Node, playwright-core
(pinned in ``tests/browser/package-lock.json``, installed into ``tests/browser/node_modules``
on first use) driving Debian's ``/usr/bin/chromium``; one scenario per run, JSON back."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

import pytest

from tests.processes import one_process_at_a_time

ROOT: Final = Path(__file__).resolve().parent.parent
DRIVER_DIR: Final = Path(__file__).parent / "browser"
SCREENSHOTS: Final = ROOT / "artifacts" / "screenshots"
CHROMIUM: Final = "/usr/bin/chromium"


def browser_driver() -> list[str]:
    """The command that runs the browser driver, its npm packages installed first."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "the browser tests need Node.js and npm on PATH"
    assert Path(CHROMIUM).is_file(), f"the browser tests need Chromium at {CHROMIUM}"
    # Several test files use the driver, and under pytest-xdist they run in parallel
    # processes: `npm ci` empties node_modules first, so one installs while the others wait.
    with one_process_at_a_time(DRIVER_DIR):
        if not (DRIVER_DIR / "node_modules" / "playwright-core" / "package.json").is_file():
            subprocess.run(  # noqa: S603 (a fixed command line, no user input)
                [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                check=True,
                cwd=DRIVER_DIR,
                timeout=300,
                capture_output=True,
            )
    return [node, str(DRIVER_DIR / "run.mjs")]


async def browse(driver: list[str], scenario: str, url: str, screenshot: str) -> dict[str, Any]:
    """Run one driver scenario without blocking the loop that serves the stack."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        *driver,
        scenario,
        url,
        str(SCREENSHOTS / screenshot),
        cwd=DRIVER_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    found: dict[str, Any] = json.loads(out)
    if "error" in found:
        problems = "".join(f"\n  {problem}" for problem in found["problems"])
        pytest.fail(f"{scenario} at {url}: {found['error']}\nin the page:{problems or ' nothing'}")
    return found
