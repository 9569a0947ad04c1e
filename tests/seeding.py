"""Every random choice in a test is seeded, and a failing test says which seed it ran with.

Each test gets a seed: ``$PBX_TEST_SEED`` when set, otherwise a fresh one. It seeds Python's
global ``random`` (what the simulator's latency jitter draws from) and the ``rng`` fixture,
a ``random.Random`` for the test's own choices. When the test fails, its report carries a
"random seed" section naming the seed, and ``PBX_TEST_SEED=<seed> pytest <test>`` replays
the same choices.
"""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Generator

import pytest

SEED_VARIABLE = "PBX_TEST_SEED"
_SEED = pytest.StashKey[int]()


def _seed_for_this_run() -> int:
    chosen = os.environ.get(SEED_VARIABLE, "").strip()
    if not chosen:
        return secrets.randbits(32)
    try:
        return int(chosen)
    except ValueError:
        raise pytest.UsageError(f"{SEED_VARIABLE} must be an integer, not {chosen!r}") from None


@pytest.fixture(autouse=True)
def seed(request: pytest.FixtureRequest) -> Generator[int]:
    """This test's seed; Python's global ``random`` is seeded with it for the test."""
    value = _seed_for_this_run()
    request.node.stash[_SEED] = value
    saved = random.getstate()
    random.seed(value)
    yield value
    random.setstate(saved)  # tests after this one draw as if it had not run


@pytest.fixture
def rng(seed: int) -> random.Random:
    """A ``random.Random`` seeded with this test's seed, for the test's own random choices."""
    return random.Random(seed)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report names its seed and how to replay it."""
    report = yield
    value = item.stash.get(_SEED, None)
    if report.failed and value is not None:
        report.sections.append(
            ("random seed", f"{SEED_VARIABLE}={value} (set it to replay this test's choices)")
        )
    return report
