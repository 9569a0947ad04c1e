"""A one-shot burst: N requests sent at the same moment, each timed, for the cold path.

Issue 19's third target is not a rate but a count: 100 concurrent requests for 100
different cold rooms must cost the PBX at most 3 calls, with the p99 latency reported.
A load generator keeps connections busy for a duration, so it cannot say that; this
opens one keep-alive connection per body beforehand (a ``{ __typename }`` on each, which
no target answers from the PBX), then writes every pre-built request in one pass of the
loop (no HTTP library in the way: the burst leaves within a millisecond or so) and times
each answer from that moment.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bench.client import build_requests, read_response
from bench.loadgen import percentiles


@dataclass(frozen=True)
class BurstResult:
    """What one burst saw."""

    requests: int
    latencies_us: tuple[int, ...]
    errors: int
    """Answers that were not HTTP 200, or carried GraphQL ``errors``."""
    codes: dict[str, int] = field(default_factory=dict)
    """The failed answers by ``extensions.code`` (or ``HTTP <status>``, or the exception)."""
    spread_us: int = 0
    """Time it took to write every request (how "at once" the burst was)."""

    def as_json(self) -> dict[str, Any]:
        """The JSON form stored in the results file."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_codes": self.codes,
            "send_spread_ms": round(self.spread_us / 1000, 3),
            "latency_ms": percentiles(list(self.latencies_us)),
        }


def burst(
    base_url: str, bodies: list[str], *, warm: str | None = None, timeout: float = 60.0
) -> BurstResult:
    """Send every body in ``bodies`` at once, each on its own connection; ``warm``, if
    given, is sent once first (its answer is not counted)."""
    return asyncio.run(_burst(base_url, bodies, warm=warm, request_timeout=timeout))


async def _burst(
    base_url: str, bodies: list[str], *, warm: str | None, request_timeout: float
) -> BurstResult:
    address = urlsplit(base_url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    requests = build_requests(host, port, "/graphql", bodies)
    (opener,) = build_requests(host, port, "/graphql", ['{"query":"{ __typename }"}'])
    streams = [await asyncio.open_connection(host, port) for _ in bodies]
    for reader, writer in streams:
        writer.write(opener)
        await read_response(reader)
    if warm is not None:
        (warm_request,) = build_requests(host, port, "/graphql", [warm])
        reader, writer = streams[0]
        writer.write(warm_request)
        await read_response(reader)
    started = time.perf_counter()
    for (_, writer), request in zip(streams, requests, strict=True):
        writer.write(request)  # into the socket now, or buffered: never waits
    spread = time.perf_counter() - started

    async def answer(reader: asyncio.StreamReader) -> tuple[int, str | None]:
        try:
            async with asyncio.timeout(request_timeout):
                status, body, _ = await read_response(reader)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            return int((time.perf_counter() - started) * 1e6), type(exc).__name__
        took = int((time.perf_counter() - started) * 1e6)
        if b'"errors":' in body:
            return took, _first_code(body)
        return took, None if status == 200 else f"HTTP {status}"

    try:
        results = await asyncio.gather(*(answer(reader) for reader, _ in streams))
    finally:
        for _, writer in streams:
            writer.close()
    codes = Counter(code for _, code in results if code is not None)
    return BurstResult(
        requests=len(results),
        latencies_us=tuple(latency for latency, _ in results),
        errors=sum(codes.values()),
        codes=dict(codes),
        spread_us=int(spread * 1e6),
    )


def _first_code(content: bytes) -> str:
    try:
        errors = json.loads(content).get("errors") or [{}]
        return str((errors[0].get("extensions") or {}).get("code", "no code"))
    except (ValueError, AttributeError, IndexError):
        return "unreadable"
