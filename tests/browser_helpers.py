"""Headless Chromium for the tests: ``tests/browser/run.mjs`` run by Node, playwright-core
(pinned in ``tests/browser/package-lock.json``, installed into ``tests/browser/node_modules``
on first use) driving Debian's ``/usr/bin/chromium``; one scenario per run, JSON back, or
(:func:`browser_session`) one page driven step by step while the test changes the world."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
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


class BrowserSession:
    """The page under a test's control (``run.mjs session``): the test changes the world (the
    simulator, the gateway) between steps, and each step waits for the page to follow."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    async def step(self, **order: Any) -> dict[str, Any]:
        """Send one step, return its answer; a failed step fails the test with the page's
        problems so far."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(order).encode() + b"\n")
        await self._process.stdin.drain()
        async with asyncio.timeout(60):  # every step waits at most WAIT (15 s) in the driver
            line = await self._process.stdout.readline()
        assert line, f"the browser driver stopped during {order}"
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            problems = await self.problems() if order.get("problems") is None else []
            listed = "".join(f"\n  {problem}" for problem in problems)
            pytest.fail(f"{order}: {answer['error']}\nin the page:{listed or ' nothing'}")
        return answer

    async def wait(self, selector: str, state: str = "attached") -> None:
        """Until ``selector`` is in that state (attached, detached, visible, hidden)."""
        await self.step(wait=selector, state=state)

    async def texts(self, selector: str) -> list[str]:
        """The text of every element ``selector`` matches, in page order."""
        texts: list[str] = (await self.step(texts=selector))["texts"]
        return texts

    async def problems(self) -> list[str]:
        """What went wrong in the page so far (script errors, failed or refused requests)."""
        problems: list[str] = (await self.step(problems=True))["problems"]
        return problems


@contextlib.asynccontextmanager
async def browser_session(
    driver: list[str], url: str, screenshot: str
) -> AsyncIterator[BrowserSession]:
    """Open ``url`` in headless Chromium for step-by-step control; closed (and its
    screenshot taken) on the way out."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        *driver,
        "session",
        url,
        str(SCREENSHOTS / screenshot),
        cwd=DRIVER_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    session = BrowserSession(process)
    try:
        assert process.stdout is not None
        async with asyncio.timeout(60):
            ready = await process.stdout.readline()
        assert json.loads(ready or b"{}").get("ready"), "the page did not open"
        yield session
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            async with asyncio.timeout(30):
                await process.communicate()
        except TimeoutError:
            process.kill()  # our own child, by its handle
            await process.wait()
