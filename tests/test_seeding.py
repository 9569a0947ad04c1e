"""The per-test seed: replayable from PBX_TEST_SEED, and named in a failing test's report."""

from __future__ import annotations

import random

import pytest

pytest_plugins = ["pytester"]

FAILING = """
def test_draws(rng):
    print("drew", rng.random())
    assert False
"""


def test_seeding_failure_report_names_the_seed_and_replays_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing test's report carries PBX_TEST_SEED=<seed>; with it set, rng draws the same."""
    pytester.makeconftest('pytest_plugins = ["tests.seeding"]')
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_drawn=FAILING)
    monkeypatch.setenv("PBX_TEST_SEED", "1234")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*- random seed -*", "PBX_TEST_SEED=1234 *"])
    result.stdout.fnmatch_lines([f"drew {random.Random(1234).random()}"])


def test_seeding_rng_and_global_random_follow_the_test_seed(seed: int, rng: random.Random) -> None:
    """The rng fixture and Python's global random both start from this test's seed."""
    expected = random.Random(seed).random()
    assert rng.random() == expected
    assert random.random() == expected
