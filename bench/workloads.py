"""The workloads: which GraphQL documents, against how many rooms, at what concurrency.

- **w1** one room, all fields, always the same document: the hot path of a cached read.
- **w2** twenty aliased ``conference`` fields in one document: per-field overhead and
  the loader's batching (one PBX call for twenty rooms when cold).
- **w3** ``conferences`` with no argument, all fields, on 100, 1,000 and 10,000 rooms:
  how time per request and memory grow with the room count.
- **w4** a mix over random subsets of 50 rooms from 200 clients, with a cache TTL short
  enough that entries expire during the run: PBX calls per 100 requests, and errors.
- **w5** random reads: 1 to 10 rooms drawn from 10,000, all already in the gateway's
  store (one ``conferences`` call fills it), as a service writes them: one document, the
  numbers in a variable, drawn anew by the load generator for every request
  (:class:`RandomReads`), so the response cache misses and execution itself is measured.
  A pool of such bodies (the same shape) is what the targets are checked and warmed with.

Every workload runs the gateway with its shipped settings (see ``bench.targets``); a
workload that must change one says so in ``settings_label``, printed beside its figures.

Room numbers are ``generate_conferences``'s: 6400 upwards. Bodies are compact JSON, so
the bytes the limit app replays are keyed exactly as the load generator sends them.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

FIRST_ROOM = 6400
ALL_FIELDS = (
    "number name participantPassword moderatorPassword waitForModerator allowInvite "
    "moderators musicOnHold mute prompt"
)


def body(query: str) -> str:
    """The HTTP body for ``query``."""
    return json.dumps({"query": query}, separators=(",", ":"))


def room(index: int) -> str:
    """The number of the ``index``-th generated room."""
    return str(FIRST_ROOM + index)


def single_room(index: int = 1) -> str:
    """w1: one room, every field."""
    return body(f'{{ conference(number: "{room(index)}") {{ {ALL_FIELDS} }} }}')


# One room by a variable: how a service that looks rooms up by number writes it. Every
# request of the cold burst sends this one document, so none waits for another's first
# validation (a literal number per request is a new document each, validated in turn).
ROOM_BY_VARIABLE = f"query Room($n: String!) {{ conference(number: $n) {{ {ALL_FIELDS} }} }}"


def room_by_variable(index: int) -> str:
    """The cold burst's body for the ``index``-th room."""
    return json.dumps(
        {"query": ROOM_BY_VARIABLE, "variables": {"n": room(index)}}, separators=(",", ":")
    )


def room_by_variable_unbound() -> str:
    """The cold burst's document with no variables: validated (and so cached) by every
    target, then refused before execution, so it warms a target without a PBX call."""
    return body(ROOM_BY_VARIABLE)


def aliased_rooms(indexes: list[int]) -> str:
    """w2 (and part of w4): one aliased ``conference`` field per room."""
    fields = " ".join(
        f'r{i}: conference(number: "{room(index)}") {{ {ALL_FIELDS} }}'
        for i, index in enumerate(indexes)
    )
    return body(f"{{ {fields} }}")


def all_rooms(fields: str = ALL_FIELDS) -> str:
    """w3: every room on the PBX."""
    return body(f"{{ conferences {{ {fields} }} }}")


def listed_rooms(indexes: list[int]) -> str:
    """Part of w4: ``conferences(numbers: [...])``."""
    numbers = ", ".join(f'"{room(index)}"' for index in indexes)
    return body(f"{{ conferences(numbers: [{numbers}]) {{ {ALL_FIELDS} }} }}")


def mixed_pool(rooms: int, size: int, *, seed: int = 7) -> list[str]:
    """w4's pool: a list of random rooms (55 %), one room (30 %), 2-5 aliases (12 %),
    every room (3 %), over ``rooms`` rooms; the same pool for the same seed."""
    rng = random.Random(seed)
    pool = []
    for _ in range(size):
        draw = rng.random()
        if draw < 0.55:
            pool.append(listed_rooms(rng.sample(range(rooms), rng.randint(2, 10))))
        elif draw < 0.85:
            pool.append(single_room(rng.randrange(rooms)))
        elif draw < 0.97:
            pool.append(aliased_rooms(rng.sample(range(rooms), rng.randint(2, 5))))
        else:
            pool.append(all_rooms())
    return list(dict.fromkeys(pool))  # the limit app keys replies by body: no duplicates


@dataclass(frozen=True)
class RandomReads:
    """Bodies the load generator draws for each request: ``prefix``, then 1 to ``most``
    distinct quoted room numbers from ``first`` to ``first + rooms - 1``, comma-separated,
    then ``suffix`` (so ``prefix + '"6400","6401"' + suffix`` is one request's JSON)."""

    prefix: str
    suffix: str
    first: int
    rooms: int
    most: int


@dataclass(frozen=True)
class Workload:
    """One workload at one room count."""

    key: str
    title: str
    rooms: int
    connections: int
    bodies: tuple[str, ...]
    duration: float
    gateway_settings: dict[str, Any] = field(default_factory=dict)
    """``Settings`` overrides for this workload (e.g. a short ``cache_ttl``)."""
    settings_label: str = ""
    """What ``gateway_settings`` changes from the shipped defaults, in words ("" = none)."""
    random: RandomReads | None = None
    """Bodies drawn per request instead of from ``bodies`` (which then only checks and
    warms the targets)."""

    @property
    def label(self) -> str:
        """``w3/1000`` for a sized workload, else the key."""
        return f"{self.key}/{self.rooms}" if self.key == "w3" else self.key


def w1(duration: float) -> Workload:
    """Hot single-room reads."""
    return Workload(
        "w1", "hot cached single-conference query", 100, 64, (single_room(1),), duration
    )


def w2(duration: float) -> Workload:
    """Twenty aliases per document."""
    return Workload(
        "w2", "20-alias query (one conference field per room)", 100, 64,
        (aliased_rooms(list(range(20))),), duration,
    )  # fmt: skip


def w3(rooms: int, duration: float) -> Workload:
    """Every room, all fields; few connections, since one request is big."""
    return Workload("w3", f"all {rooms:,} rooms, all fields", rooms, 4, (all_rooms(),), duration)


def w4(duration: float, *, ttl: float) -> Workload:
    """The mixed load with expiring entries."""
    return Workload(
        "w4",
        f"mixed load, 200 clients, random subsets of 50 rooms, cache TTL {ttl:g} s",
        50,
        200,
        tuple(mixed_pool(50, 256)),
        duration,
        gateway_settings={"cache_ttl": ttl, "security": LIFTED_FETCH_BUDGET},
        settings_label=f"cache TTL {ttl:g} s; PBX-fetch budget lifted (one load generator "
        "stands for 200 clients)",
    )


LIFTED_FETCH_BUDGET = {"miss_rate": 1e9, "miss_burst": 1e9}
"""w4's 200 clients come from one address, so one identity: with the default budget (1
PBX fetch a second, bursts of 10) its expiring entries would be refused as if one
client caused them all. The figures say so wherever this is used."""

W5_ROOMS = 10_000
W5_MOST = 10
W5_TTL = 300.0
"""w5's cache TTL (seconds): longer than the workload runs, fill included."""

ROOMS_BY_NUMBERS = (
    f"query Rooms($numbers: [String!]) {{ conferences(numbers: $numbers) {{ {ALL_FIELDS} }} }}"
)
"""w5's one document: a service reading the rooms it needs by a variable (``[String!]``,
which fits the gateway's ``[String]`` and is what the peers' schema declares)."""


def rooms_by_numbers(numbers: list[str]) -> str:
    """A w5 body: :data:`ROOMS_BY_NUMBERS` with ``numbers``."""
    return json.dumps(
        {"query": ROOMS_BY_NUMBERS, "variables": {"numbers": numbers}}, separators=(",", ":")
    )


def random_reads(rooms: int, size: int, *, seed: int = 11) -> list[str]:
    """w5's pool: 1 to 10 rooms drawn from ``rooms``, as the load generator draws them."""
    rng = random.Random(seed)
    drawn = [rng.sample(range(rooms), rng.randint(1, W5_MOST)) for _ in range(size)]
    # The ceiling app answers a body it was not given (every drawn one) with the first
    # reply: make it a body of 5 rooms, just under the draw's mean of 5.5, so the ceiling
    # is not lowered by a large reply.
    drawn.sort(key=lambda indexes: len(indexes) != W5_MOST // 2)
    pool = [rooms_by_numbers([room(index) for index in indexes]) for indexes in drawn]
    return list(dict.fromkeys(pool))


def random_reads_spec(rooms: int) -> RandomReads:
    """How the load generator draws w5's bodies (the same text as :func:`rooms_by_numbers`)."""
    marker = rooms_by_numbers(["0"])
    prefix, _, suffix = marker.partition('"0"')
    return RandomReads(prefix, suffix, FIRST_ROOM, rooms, W5_MOST)


def w5(duration: float, *, pool: int = 1_000) -> Workload:
    """Random reads over 10,000 rooms already in the store, drawn per request."""
    return Workload(
        "w5",
        f"random reads, 1-{W5_MOST} of {W5_ROOMS:,} rooms in the store, one document, "
        "numbers drawn per request",
        W5_ROOMS,
        64,
        tuple(random_reads(W5_ROOMS, pool)),
        duration,
        # The workload reads rooms already in the store (0 PBX calls). Filled once before
        # the rounds, they would expire under the default 30 s TTL while the peers start and
        # the rounds alternate, and the later rounds would measure stale-while-revalidate
        # and PBX refreshes queued behind the peers' calls on the one serial simulator.
        gateway_settings={"cache_ttl": W5_TTL},
        settings_label=f"cache TTL {W5_TTL:g} s, so the rooms filled before the rounds stay "
        "fresh through all of them",
        random=random_reads_spec(W5_ROOMS),
    )
