"""The response cache's doorkeeper: a key is worth keeping once it was seen before."""

from __future__ import annotations

import pytest

from gateway.schema.second_sight import SecondSight


def test_a_key_is_seen_before_only_at_its_second_sight() -> None:
    sight = SecondSight()
    key = ("query Rooms($n: [String]) { ... }", None, '{"n":["6401"]}', frozenset({"read"}))
    assert not sight.seen_before(key)
    assert sight.seen_before(key)
    assert sight.seen_before(key)


def test_distinct_keys_are_each_new() -> None:
    """Keys of distinct hashes (ints hash to themselves: no salt, so no chance involved)
    are each new at their first sight."""
    sight = SecondSight()
    assert not any(sight.seen_before(n) for n in range(1_000))
    assert all(sight.seen_before(n) for n in range(1_000))


def test_sightings_fade_when_a_round_is_full() -> None:
    """After ``marks_per_round`` marks the map is emptied: an old key is new again, so a
    flood of one-off keys cannot leave every bit set (every key "seen")."""
    sight = SecondSight(bits=1 << 10, marks_per_round=4)
    assert not any(sight.seen_before(n) for n in (1, 2, 3, 4))  # the round is full
    assert sight.seen_before(1)  # still this round
    assert not sight.seen_before(5)  # a fifth mark starts a new round...
    assert not sight.seen_before(1)  # ...in which the first key is new again
    assert sight.seen_before(5)


def test_the_map_size_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        SecondSight(bits=1000)
