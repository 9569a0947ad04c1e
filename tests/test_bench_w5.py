"""w5's bodies drawn per request (bench.workloads.RandomReads): the asyncio client and
wrk's script draw the same shape as the pool the targets are checked with."""

from __future__ import annotations

import json
import random
from pathlib import Path

from bench import workloads
from bench.client import drawer
from bench.loadgen import Load, PythonClient, wrk_script
from bench.runner import TARGETS, Options


def test_bench_w5_client_draws_one_document_with_fresh_numbers() -> None:
    """Each drawn request is the w5 document with 1 to 10 distinct rooms of the 10,000."""
    shape = workloads.random_reads_spec(workloads.W5_ROOMS)
    spec = {"host": "127.0.0.1", "port": 8000, "path": "/graphql", "random": vars(shape)}
    draw = drawer(spec)
    assert draw is not None
    rng = random.Random(1)
    seen = set()
    for _ in range(200):
        request = draw(rng)
        head, _, body = request.partition(b"\r\n\r\n")
        assert f"Content-Length: {len(body)}".encode() in head
        decoded = json.loads(body)
        assert decoded["query"] == workloads.ROOMS_BY_NUMBERS
        numbers = decoded["variables"]["numbers"]
        assert 1 <= len(numbers) <= workloads.W5_MOST
        assert len(set(numbers)) == len(numbers)
        assert all(6400 <= int(number) < 6400 + workloads.W5_ROOMS for number in numbers)
        assert body == workloads.rooms_by_numbers(numbers).encode()  # the pool's exact text
        seen.add(body)
    assert len(seen) == 200  # the response cache would miss every one


def test_bench_w5_wrk_script_draws_instead_of_picking() -> None:
    """With RandomReads, wrk's request() builds the body; without, it picks from the pool."""
    w5 = workloads.w5(1.0, pool=3)
    drawn = wrk_script(w5.bodies, "/graphql", w5.random)
    assert "math.random(1, 10)" in drawn
    assert "table.concat(parts" in drawn
    assert "return prepared[math.random(#prepared)]" not in drawn
    picked = wrk_script(w5.bodies, "/graphql")
    assert "return prepared[math.random(#prepared)]" in picked


def test_bench_w5_rooms_stay_fresh_through_every_round() -> None:
    """w5 reads rooms already in the store: its TTL outlasts the head-to-head (each target
    started, checked, warmed and measured, with a margin), so no round measures rooms
    expired into stale-while-revalidate and PBX refreshes (the default 30 s TTL did: the
    second round ran at half the first's rate)."""
    options = Options()
    w5 = workloads.w5(options.duration)
    targets = len(TARGETS)  # every target there is, as an upper bound
    longest = targets * (options.start_cost + options.warmup + options.duration) * 3
    assert w5.gateway_settings["cache_ttl"] > longest
    assert "cache TTL" in w5.settings_label  # named beside the figures


def test_bench_w5_each_run_draws_a_sequence_of_its_own(tmp_path: Path) -> None:
    """Every run of a load generator (each warm-up, each round) seeds its draws anew: with
    one seed for all, w5's rounds replayed the warm-up's bodies, and a gateway keeping
    answers served those replays from its response cache instead of executing them."""
    client = PythonClient()
    load = Load("http://127.0.0.1:9", (), 1, 0.2, timeout=0.2, random=workloads.w5(1.0).random)
    seeds = []
    for run in range(2):
        folder = tmp_path / str(run)
        folder.mkdir()
        client.run(load, folder)  # port 9 refuses: only the spec written matters here
        seeds.append(json.loads((folder / "client-0.json").read_text())["seed"])
    assert seeds[0] != seeds[1]
    w5 = workloads.w5(1.0, pool=3)
    assert "math.randomseed(2000 + id)" in wrk_script(w5.bodies, "/graphql", w5.random, seed=2000)
