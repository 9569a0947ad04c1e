"""``python -m bench``: run the benchmark, or compare two result files.

python -m bench                      # everything, under 5 minutes
python -m bench --quick              # a smaller plan, under a minute and a half
python -m bench --workloads w1 --targets gateway,limit --duration 3
python -m bench --profile            # and py-spy on the gateway under w1, w2, w5, w3/1000
python -m bench --compare old.json new.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bench import report
from bench.loadgen import LoadGenerator, PythonClient, Wrk
from bench.runner import TARGETS, WORKLOADS, Bench, Options
from bench.targets import Stack

RESULTS = Path(__file__).resolve().parent / "results"

QUICK = Options(
    duration=2.0,
    rounds=2,
    warmup=1.0,
    w5_pool=300,
    w4_duration=3.0,
    w4_ttl=1.0,
    sizes=(1_000,),
    worker_counts=(1, 2),
    fleet_counts=(2,),
    budget=85.0,
    compare_stacks=False,
    loadgen_check=False,
    naive_workloads=("w1",),
    peer_workloads=("w1",),
    start_cost=2.0,
)


def _words(text: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    words = tuple(word.strip() for word in text.split(",") if word.strip())
    unknown = [word for word in words if word not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {', '.join(allowed)}")
    return words


def _numbers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(word) for word in text.split(",") if word.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas: {text!r}"
        ) from None


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the gateway against its HTTP ceiling, a naive baseline and "
        "two peers (Apollo Server, GraphQL Yoga), on loopback, against the serial PBX "
        "simulator.",
    )
    p.add_argument("--quick", action="store_true", help="the smaller plan (under 90 s)")
    p.add_argument("--duration", type=float,
                   help="seconds of load per target and workload (4; quick 2)")  # fmt: skip
    p.add_argument("--rounds", type=int,
                   help="alternating rounds of w1, w2, w5 (2)")  # fmt: skip
    p.add_argument("--out", type=Path, help="results file (default bench/results/<time>.json)")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("OLD", "NEW"),
                   help="compare two results files and exit")  # fmt: skip
    p.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto",
                   help="wrk when installed (auto), or the asyncio client")  # fmt: skip
    p.add_argument("--client-processes", type=int, default=1,
                   help="asyncio client processes (with --loadgen python)")  # fmt: skip
    p.add_argument("--workloads", type=lambda t: _words(t, WORKLOADS),
                   help=f"some of {','.join(WORKLOADS)}")  # fmt: skip
    p.add_argument("--targets", type=lambda t: _words(t, TARGETS),
                   help=f"some of {','.join(TARGETS)}")  # fmt: skip
    p.add_argument("--connections", type=int,
                   help="one concurrency for all (default 64; w3 4; w4 200)")  # fmt: skip
    p.add_argument("--sizes", type=_numbers, help="w3 room counts (100,1000,10000)")
    p.add_argument("--workers", type=_numbers,
                   help="uvicorn worker counts of workers and fleet (1,2,4)")  # fmt: skip
    p.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    p.add_argument("--http", choices=("auto", "h11", "httptools"), default="auto")
    p.add_argument("--budget", type=float, help="seconds; later runs are skipped past it")
    p.add_argument("--nice", type=int, default=0,
                   help="CPU priority of all processes, e.g. -10 when shared (root)")  # fmt: skip
    p.add_argument("--wait-quiet", type=float, metavar="S",
                   help="before each window wait up to S s for other work to stop")  # fmt: skip
    p.add_argument("--no-checks", action="store_true",
                   help="skip w1's second gateway stack and load generator check")  # fmt: skip
    p.add_argument("--profile", action="store_true",
                   help="then py-spy on the gateway (of w1, w2, w5, w3/1000)")  # fmt: skip
    return p


def options_from(args: argparse.Namespace) -> Options:
    """The plan the arguments ask for."""
    options = QUICK if args.quick else Options()
    best = Stack.best()
    stack = Stack(
        best.loop if args.loop == "auto" else args.loop,
        best.http if args.http == "auto" else args.http,
    )
    changes: dict[str, object] = {"stack": stack}
    if args.nice:
        changes["nice"] = args.nice
    if args.no_checks:
        changes.update(compare_stacks=False, loadgen_check=False)
    if args.duration is not None:
        changes["duration"] = args.duration
        changes["w4_duration"] = max(args.duration, 2 * options.w4_ttl + 1)
    for name, value in (
        ("workloads", args.workloads),
        ("targets", args.targets),
        ("sizes", args.sizes),
        ("worker_counts", args.workers),
        ("fleet_counts", args.workers),
        ("budget", args.budget),
        ("connections", args.connections),
        ("wait_quiet", args.wait_quiet),
        ("rounds", args.rounds),
    ):
        if value is not None:
            changes[name] = value
    return replace(options, **changes)  # type: ignore[arg-type]


def loadgen_from(args: argparse.Namespace) -> tuple[LoadGenerator, str]:
    """wrk if asked for or found, else the asyncio client; and its version."""
    executable = Wrk.find()
    if args.loadgen == "wrk" and executable is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    if executable is not None and args.loadgen != "python":
        wrk = Wrk(executable)
        return wrk, wrk.version()
    return PythonClient(processes=args.client_processes), ""


def main(argv: list[str] | None = None) -> int:
    """Run, write the results file, print where it is."""
    args = parser().parse_args(argv)
    if args.compare:
        old, new = (json.loads(path.read_text()) for path in args.compare)
        report.say(report.compare(old, new))
        return 0
    options = options_from(args)
    loadgen, version = loadgen_from(args)
    out = args.out or RESULTS / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    with tempfile.TemporaryDirectory(prefix="pbx-bench-") as workdir:
        bench = Bench(options, loadgen, Path(workdir), loadgen_version=version)
        document = bench.run()
        if args.profile:
            from bench.profiling import profile

            document["profile"] = profile(bench, out.with_suffix(""))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1))
    report.say(f"results: {out}")
    return 0
