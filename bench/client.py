"""The asyncio load client, run as its own process: ``python -m bench.client SPEC.json``.

Used when ``wrk`` is not installed, and by the smoke test. Each connection is a keep-alive
HTTP/1.1 loop written on asyncio streams (no HTTP library in the measured path): send a
pre-built request, read the status line, headers and ``Content-Length`` body, repeat until
the duration is over. A request still in flight at the end is not counted (as in wrk).
The result, printed as JSON on stdout, holds every latency in microseconds so the parent
can merge several client processes exactly.

The spec: ``host``, ``port``, ``path``, ``bodies`` (strings), ``connections``,
``duration``, ``timeout``, ``seed``, and ``random`` (``bench.workloads.RandomReads`` as a
dict, or null): when given, each request's body is drawn anew, as wrk's script draws it.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Tally:
    """What one client process saw."""

    latencies_us: list[int] = field(default_factory=list)
    http_errors: int = 0
    graphql_errors: int = 0
    socket_errors: int = 0
    timeouts: int = 0
    bytes_read: int = 0


def build_requests(host: str, port: int, path: str, bodies: list[str]) -> list[bytes]:
    """One complete ``POST`` per body, ready to write."""
    requests = []
    for body in bodies:
        payload = body.encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        requests.append(head.encode("ascii") + payload)
    return requests


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body, and whether the server will close the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked, close = -1, False, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = b"close" in value.lower()
    if length >= 0:
        return status, await reader.readexactly(length), close
    if not chunked:
        raise ValueError("a response with neither Content-Length nor chunked encoding")
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return status, b"".join(parts), close
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def drawer(spec: dict[str, Any]) -> Callable[[random.Random], bytes] | None:
    """Draws one request per call from ``spec["random"]``, or None (pick from the pool)."""
    shape = spec.get("random")
    if not shape:
        return None
    host, port, path = spec["host"], int(spec["port"]), spec["path"]

    def draw(rng: random.Random) -> bytes:
        count = rng.randint(1, int(shape["most"]))
        rooms = rng.sample(range(int(shape["rooms"])), count)
        numbers = ",".join(f'"{int(shape["first"]) + room}"' for room in rooms)
        body = f"{shape['prefix']}{numbers}{shape['suffix']}"
        (request,) = build_requests(host, port, path, [body])
        return request

    return draw


async def connection(
    spec: dict[str, Any], requests: list[bytes], tally: Tally, rng: random.Random
) -> None:
    """One keep-alive connection sending requests back to back, forever (until cancelled)."""
    host, port, timeout = spec["host"], int(spec["port"]), float(spec["timeout"])
    draw = drawer(spec)
    clock = time.perf_counter
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            tally.socket_errors += 1
            await asyncio.sleep(0.05)
            continue
        try:
            while True:
                request = draw(rng) if draw else requests[rng.randrange(len(requests))]
                started = clock()
                writer.write(request)
                try:
                    async with asyncio.timeout(timeout):
                        status, body, close = await read_response(reader)
                except TimeoutError:
                    tally.timeouts += 1
                    break
                tally.latencies_us.append(int((clock() - started) * 1e6))
                tally.bytes_read += len(body)
                if status != 200:
                    tally.http_errors += 1
                elif b'"errors":' in body:
                    tally.graphql_errors += 1
                if close:
                    break
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            tally.socket_errors += 1
        finally:
            writer.close()


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Drive ``spec["connections"]`` connections for ``spec["duration"]`` seconds."""
    requests = build_requests(spec["host"], int(spec["port"]), spec["path"], spec["bodies"])
    tally = Tally()
    rng = random.Random(spec.get("seed", 1))
    tasks = [
        asyncio.create_task(connection(spec, requests, tally, random.Random(rng.random())))
        for _ in range(int(spec["connections"]))
    ]
    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.sleep(float(spec["duration"]))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finished = len(tally.latencies_us)  # what ended inside the window
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "duration_s": elapsed,
        "cpu_s": cpu,
        "latencies_us": tally.latencies_us[:finished],
        "http_errors": tally.http_errors,
        "graphql_errors": tally.graphql_errors,
        "socket_errors": tally.socket_errors,
        "timeouts": tally.timeouts,
        "bytes_read": tally.bytes_read,
        "loop": loop_name(),
    }


def loop_name() -> str:
    """Which event loop runs the client."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def main(argv: list[str] | None = None) -> int:
    """Run the spec file given as the only argument; print the result as JSON."""
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    if loop_name() == "uvloop":
        import uvloop

        result = uvloop.run(run(spec))
    else:
        result = asyncio.run(run(spec))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
