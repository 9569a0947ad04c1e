"""The response cache's storage (gateway/schema/kept_answers.py): byte budget, least
recently used out first, each entry gone at its own expiry time, read or not."""

from __future__ import annotations

from gateway.schema.kept_answers import KeptAnswers
from tests.timing import FakeClock


def test_kept_answers_evict_the_least_recently_used_within_the_budget() -> None:
    """A read makes an entry the most recently used; the one not read goes first."""
    clock = FakeClock()
    kept: KeptAnswers[str, str] = KeptAnswers(300, clock)
    for key in "abc":
        kept.put(key, key.upper(), 100, clock() + 60)
    assert kept.get("a") == "A"
    kept.put("d", "D", 100, clock() + 60)
    assert [kept.get(key) for key in "abcd"] == ["A", None, "C", "D"]
    assert (kept.currsize, kept.evictions, len(kept)) == (300, 1, 3)


def test_kept_answers_expire_at_their_own_time_read_or_not() -> None:
    """Each entry leaves when its time comes (valid while now < expires), freeing its bytes."""
    clock = FakeClock()
    kept: KeptAnswers[str, str] = KeptAnswers(1000, clock)
    kept.put("late", "L", 100, clock() + 20)
    kept.put("early", "E", 100, clock() + 10)
    clock.advance(10)
    kept.expire()
    assert (len(kept), kept.currsize, kept.get("late")) == (1, 100, "L")
    clock.advance(10)
    assert kept.get("late") is None
    assert (len(kept), kept.currsize, kept.evictions) == (0, 0, 0)
    kept.put("past", "P", 100, clock())  # already expired: not kept
    assert len(kept) == 0


def test_kept_answers_replacing_a_key_counts_its_bytes_once() -> None:
    """A new value for a key replaces the old one (size and expiry), evicting nothing."""
    clock = FakeClock()
    kept: KeptAnswers[str, str] = KeptAnswers(250, clock)
    kept.put("a", "old", 100, clock() + 5)
    kept.put("b", "B", 100, clock() + 60)
    kept.put("a", "new", 150, clock() + 60)
    assert (kept.get("a"), kept.currsize, kept.evictions) == ("new", 250, 0)
    clock.advance(5)
    kept.expire()  # the old value's expiry no longer applies to the key
    assert kept.get("a") == "new"


def test_kept_answers_expiry_heap_stays_bounded_under_churn() -> None:
    """Random variants evicting each other leave no unbounded trail of dead heap items."""
    clock = FakeClock()
    kept: KeptAnswers[int, int] = KeptAnswers(10 * 100, clock)
    for key in range(10_000):
        kept.put(key, key, 100, clock() + 30)
    assert (len(kept), kept.evictions) == (10, 9_990)
    assert len(kept._expiry) <= 2 * len(kept) + 65
