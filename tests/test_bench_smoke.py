"""The benchmark harness end to end, tiny: w1 against the gateway and the limit app, and
two workers sharing a Redis (the fleet workload).

Two-second windows, four connections and the asyncio client, so it needs no wrk and no
uvloop. It checks the machinery (processes start and stop, the results file has its
keys, the PBX counters are read) and the one count that must hold on any machine: a hot
cached query costs the PBX nothing. It never asserts on a timing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _bench(*args: str, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (this interpreter, our own module)
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _run(results: dict[str, Any], target: str) -> dict[str, Any]:
    run: dict[str, Any] = next(r for r in results["runs"] if r["target"] == target)
    return run


def test_bench_tiny_run_writes_results_and_hot_reads_cost_no_pbx_call(tmp_path: Path) -> None:
    """A tiny w1 run writes every section and key, and the hot path calls no PBX."""
    out = tmp_path / "results.json"
    done = _bench(
        "--workloads", "w1", "--targets", "gateway,limit", "--duration", "2", "--connections", "4",
        "--loadgen", "python", "--no-checks", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())

    expected = {"version", "environment", "options", "runs", "ratios", "w3_scaling",
                "loadgen_check", "skipped"}  # fmt: skip
    assert expected <= results.keys()
    assert {"loadgen", "loop", "http", "packages", "git", "cpus"} <= results["environment"].keys()
    assert [(r["workload"], r["target"]) for r in results["runs"]] == [
        ("w1", "gateway"),
        ("w1", "limit"),
    ]
    for run in results["runs"]:
        assert {"rps", "requests", "latency_ms", "errors", "pbx", "server", "client"} <= run.keys()
        assert {"p50", "p99"} <= run["latency_ms"].keys()
        assert {"calls_total", "query_calls", "per_1000_requests", "logins"} <= run["pbx"].keys()
        assert run["requests"] > 0
        assert run["errors"]["total"] == 0
        assert run["server"]["peak_rss_bytes"] > 0

    gateway, limit = _run(results, "gateway"), _run(results, "limit")
    assert gateway["pbx"]["query_calls"] <= 1  # warmed before the window: served from cache
    assert gateway["request_log_lines"] > 0  # the request log is on, as shipped
    assert limit["pbx"]["calls_total"] == 0
    assert limit["same_bytes_as_gateway"] is True
    assert {"gateway/limit", "gateway/naive"} <= set(results["ratios"]["w1"])


def test_bench_compare_reads_two_results_files(tmp_path: Path) -> None:
    """--compare prints one line per run found in both files."""
    run = {
        "label": "w1", "target": "gateway", "stack": "asyncio+h11", "workers": 1, "rps": 100.0,
        "latency_ms": {"p50": 1.0, "p99": 2.0}, "pbx": {"per_1000_requests": 0.0},
        "server": {"peak_rss_bytes": 50e6, "cpu_ms_per_request": 1.0},
    }  # fmt: skip
    fan = {
        "label": "fanout/20", "latency_to_last_ms": {"p50": 10.0, "p99": 20.0},
        "burst": {"events_per_s": 50.0, "cpu": {"gateway_us_per_delivery": 200.0}},
        "rss": {"per_subscriber_bytes": 50_000}, "pbx": {"query_in_session_per_event": 0.0},
    }  # fmt: skip
    old = {"started_at": "then", "environment": {"git": {"commit": "a"}}, "runs": [run],
           "fanout": [fan]}  # fmt: skip
    new = {**old, "started_at": "now", "runs": [{**run, "rps": 150.0}],
           "fanout": [{**fan, "latency_to_last_ms": {"p50": 5.0, "p99": 9.0}}]}  # fmt: skip
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))

    done = _bench("--compare", str(tmp_path / "old.json"), str(tmp_path / "new.json"))

    assert done.returncode == 0, done.stderr
    assert "w1 gateway asyncio+h11" in done.stdout
    assert "+50%" in done.stdout
    assert "10.0 -> 5.0" in done.stdout  # the fan-out row's latency to the last subscriber


def test_bench_tiny_fleet_run_logs_in_once_for_all_workers(tmp_path: Path) -> None:
    """Two workers sharing a Redis the harness starts: the PBX sees one login at start-up,
    never more than the fleet's cap of calls at once, and Redis serves the workers."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    out = tmp_path / "results.json"
    done = _bench(
        "--workloads", "fleet", "--workers", "2", "--duration", "1", "--connections", "4",
        "--loadgen", "python", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())

    (run,) = results["runs"]
    assert (run["workload"], run["target"], run["workers"]) == ("fleet", "gateway", 2)
    assert run["requests"] > 0 and run["errors"]["total"] == 0
    assert run["pbx"]["startup_logins"] == 1  # two workers, one PBX session
    assert run["pbx"]["logins"] == 0
    assert run["pbx"]["max_in_flight"] <= 2  # PBX_MAX_CONCURRENCY, for the whole fleet
    assert run["redis"]["commands"] > 0
    assert results["options"]["fleet_counts"] == [2]


def test_bench_cold_burst_costs_the_gateway_three_pbx_calls(tmp_path: Path) -> None:
    """The cold workload: 100 requests for 100 different cold rooms sent at once to a fresh
    gateway cost at most 3 PBX calls and no error, as shipped and with the budget lifted."""
    out = tmp_path / "results.json"
    done = _bench("--workloads", "cold", "--targets", "gateway", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(out.read_text())["cold_burst"]
    assert [row["settings"] for row in rows] == ["shipped defaults", "PBX-fetch budget lifted"]
    for row in rows:
        assert row["requests"] == 100
        assert (row["errors"], row["error_codes"]) == (0, {})
        assert 1 <= row["query_calls"] <= 3
        assert {"p50", "p99", "max"} <= row["latency_ms"].keys()


@pytest.mark.timeout(300)  # two rows, each starting a simulator, a gateway and a load process
def test_bench_fanout_delivers_every_change_to_every_subscriber(tmp_path: Path) -> None:
    """The fan-out workload, tiny: 20 subscribers over a few rooms, a few changes made on the
    PBX, paced then back to back. Every subscriber gets its INITIAL state and every change of
    its room; with events on the changes cost the PBX no call; the poll row asks the PBX
    and delivers them too. Counts only: no timing is asserted."""
    out = tmp_path / "results.json"
    done = _bench(
        "--workloads", "fanout", "--fanout-sizes", "20", "--fanout-events", "6",
        "--fanout-rate", "10", "--fanout-burst", "10", "--fanout-poll-events", "3",
        "--out", str(out), timeout=240,  # four processes start per row: slow on a busy machine
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    assert "fanout" in results["options"]["workloads"]

    rows = {row["mode"]: row for row in results["fanout"]}
    assert set(rows) == {"events", "poll"}
    for row in rows.values():
        assert {"subscribers", "rooms", "events_per_s", "latency_to_last_ms",
                "latency_to_first_ms", "rss", "pbx", "endings", "deliveries_missed", "cpu",
                "settings", "stack"} <= row.keys()  # fmt: skip
        assert {"p50", "p99"} <= row["latency_to_last_ms"].keys()
        assert row["latency_from"] == "simulator"  # from the simulator's stamp of each change
        assert {"before_bytes", "subscribed_bytes", "per_subscriber_bytes"} <= row["rss"].keys()
        assert row["rss"]["before_bytes"] > 0
        assert row["subscribers"] == 20
        assert (row["connect_failures"], row["initial_updates"]) == (0, 20)
        assert row["events_complete"] == row["events"]
        # Every subscriber of a room received every change of that room, once, in order.
        assert row["deliveries"] == row["deliveries_expected"] == row["events"] * 20 // row["rooms"]
        assert row["deliveries_missed"] == 0
        assert row["unmatched_updates"] == 0
        assert row["endings"] == {"slow_consumer_closes": 0, "error_codes": {}}
        assert row["subscribers_open_at_end"] == 20
        assert row["ignored_settings"] == []

    for mode, row in rows.items():  # the gateway's own /metrics: the source it ran on
        assert row["gateway_live"]["source"] == mode
        assert row["gateway_live_subscribed"]["subscribers"] == 20

    events = rows["events"]
    assert events["events"] == 6
    assert events["gateway_live"]["events_received"] == 6
    assert events["pbx"]["query_in_session_calls"] == 0  # events on: no PBX call per change
    assert events["pbx"]["query_in_session_per_event"] == 0
    assert events["pbx"]["tcp_events_sent"] == 6  # each change went out as one event
    assert events["settings"] == ""  # shipped defaults
    burst = events["burst"]
    assert burst["events_complete"] == burst["events"] == 10
    assert burst["deliveries"] == burst["deliveries_expected"]
    assert burst["pbx"]["query_in_session_calls"] == 0
    assert burst["cpu"]["gateway_us_per_delivery"] > 0

    poll = rows["poll"]
    assert poll["pbx"]["query_in_session_calls"] > 0  # the poller asked the PBX
    assert poll["gateway_live"]["polls"] >= 1  # its own count (read apart from the PBX's)
    assert poll["pbx"]["events_suppressed"] == poll["events"]  # and the PBX sent no event
    assert poll["pbx"]["tcp_events_sent"] == 0
    assert "GATEWAY_LIVE_SOURCE=poll" in poll["settings"]
    assert "burst" not in poll


def test_bench_targets_started_one_after_another_on_a_reused_port_both_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The OS often hands the same free port out again (a full run crashed on it: the
    fleet's second gateway found the first one's ready folder). Two gateways started one
    after the other on one port each start, wait for their own workers, and answer."""
    from bench import targets, workloads
    from bench.processes import free_port
    from bench.targets import Stack, TargetFactory

    factory = TargetFactory(tmp_path, Stack("asyncio", "h11"), latency=0.0, jitter=0.0)
    with factory.simulator(10) as simulator:
        port = free_port()
        monkeypatch.setattr(targets, "free_port", lambda: port)
        for _ in range(2):
            with factory.target("gateway", simulator) as target:
                assert target.process.port == port
                reply = json.loads(target.post(workloads.single_room(1)))
                assert reply["data"]["conference"]["number"] == workloads.room(1)
