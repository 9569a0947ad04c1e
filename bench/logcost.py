"""``python -m bench.logcost``: what one request-log line costs, in microseconds.

Calls ``request_log.record`` (the function both the fast path and strawberry's extension
call) ``--lines`` times under three set-ups, each writing to the same sink (a file in a
temporary folder, or ``--sink /dev/null``):

- ``off``: the level above INFO, so no line is made (the floor);
- ``shipped``: ``configure_logging("INFO")`` as ``serve`` calls it: the line formatted with
  orjson and queued for the writer thread;
- ``synchronous``: what ``serve`` did before, a ``logging.StreamHandler`` with the JSON
  formatter and the redacting filter, writing and flushing each line on the caller.

It prints the caller's wall time per line and the process's CPU per line (the writer
thread's included, since it shares the GIL), after every line has reached the sink.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from gateway.observability import request_log
from gateway.observability.logs import JsonFormatter, configure_logging
from gateway.secrets import RedactingFilter

SETUPS = ("off", "shipped", "synchronous")


@contextlib.contextmanager
def _setup(name: str, sink: IO[str]) -> Iterator[None]:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    try:
        if name == "synchronous":
            handler: logging.Handler = logging.StreamHandler(sink)
            handler.setFormatter(JsonFormatter())
            handler.addFilter(RedactingFilter())
            root.handlers[:] = [handler]
            root.setLevel(logging.INFO)
        else:
            configure_logging("WARNING" if name == "off" else "INFO", stream=sink)
        yield
        for active in root.handlers:
            active.flush()  # every line written before the clock stops
    finally:
        for active in root.handlers:
            if active not in saved:
                active.close()
        root.handlers[:] = saved
        root.setLevel(level)


def measure(name: str, sink: IO[str], lines: int) -> dict[str, float]:
    """Microseconds per line for set-up ``name``: on the caller, and CPU in all."""
    with _setup(name, sink):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(lines):
            request_log.record(
                None, request_id=None, operation="Wall", outcome="ok", seconds=0.0001,
                pbx_fetches=0, cache="response", client="anonymous@127.0.0.1", codes=[],
            )  # fmt: skip
        caller = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    return {"caller_us": 1e6 * caller / lines, "cpu_us": 1e6 * cpu / lines}


def main(argv: list[str] | None = None) -> int:
    """Print one row per set-up."""
    parser = argparse.ArgumentParser(prog="python -m bench.logcost")
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--sink", type=Path, help="write here (default: a temporary file)")
    parser.add_argument("--rounds", type=int, default=3, help="best of N per set-up")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pbx-logcost-") as folder:
        path = args.sink or Path(folder, "request.log")
        print(f"request log, {args.lines:,} lines per round, best of {args.rounds}, into {path}")
        print(f"  {'set-up':<12} {'caller µs/line':>15} {'CPU µs/line':>12}")
        for name in SETUPS:
            best: dict[str, float] | None = None
            for _ in range(args.rounds):
                with path.open("w") as sink:
                    got = measure(name, sink, args.lines)
                if best is None or got["cpu_us"] < best["cpu_us"]:
                    best = got
            assert best is not None
            print(f"  {name:<12} {best['caller_us']:>15.2f} {best['cpu_us']:>12.2f}", flush=True)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
