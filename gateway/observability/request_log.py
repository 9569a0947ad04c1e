"""One structured log line and the metrics for every GraphQL operation.

:func:`record` takes the request id, operation name, duration, PBX fetches the request
started, the cache outcome (``hit``, ``miss``, ``stale``, ``response``), the client
identity's name and the error codes, and writes them both as a JSON log line (logger
``gateway.request``) and as Prometheus metrics. Nothing secret is in either: no
variables, no PINs, no tokens. Its callers: the schema's extension
(:mod:`gateway.schema.request_recorder`) for every executed operation, and the view's
response-cache fast path.

The line is one per request, so its cost matters: under ``serve``'s logging it is
formatted with orjson and queued for the writer thread (``logs.direct_writer``), a few
microseconds; the fallback through ``logging`` serves every other set-up.
"""

from __future__ import annotations

import logging
import time
from random import getrandbits
from typing import Final

import orjson

from gateway.observability.log_writer import iso_time
from gateway.observability.logs import direct_writer
from gateway.observability.metrics import Metrics

logger = logging.getLogger("gateway.request")

Constant = tuple[str | None, str, int, str, str | None, tuple[str, ...]]
"""What a line shares with the previous lines of the same kind: the operation, outcome,
PBX fetches, cache outcome, client and error codes."""
_KINDS_MAX: Final = 256
_kinds: dict[Constant, tuple[bytes, bytes, bytes]] = {}


def request_line(time_text: str, request_id: str, duration_ms: float, kind: Constant) -> bytes:
    """The JSON line :class:`JsonFormatter` would write for one request (``json_line``
    of its entry, the same bytes), assembled around the parts lines of one ``kind`` share,
    which are encoded once (at most ``_KINDS_MAX`` kinds kept, emptied when full)."""
    parts = _kinds.get(kind)
    if parts is None:
        operation, outcome, pbx_fetches, cache, client, codes = kind
        message = f"graphql {operation or 'anonymous'} {outcome}"
        parts = (
            b'","level":"info","logger":"'
            + logger.name.encode()
            + b'","message":'
            + orjson.dumps(message)
            + b',"request_id":',
            b',"operation":'
            + orjson.dumps(operation)
            + b',"outcome":'
            + orjson.dumps(outcome)
            + b',"duration_ms":',
            b',"pbx_fetches":'
            + orjson.dumps(pbx_fetches)
            + b',"cache":'
            + orjson.dumps(cache)
            + b',"client":'
            + orjson.dumps(client)
            + b',"error_codes":'
            + orjson.dumps(list(codes))
            + b"}\n",
        )
        if len(_kinds) >= _KINDS_MAX:
            _kinds.clear()
        _kinds[kind] = parts
    head, middle, tail = parts
    return (
        b'{"time":"'
        + time_text.encode()
        + head
        + orjson.dumps(request_id)
        + middle
        + orjson.dumps(duration_ms)
        + tail
    )


def record(
    metrics: Metrics | None,
    *,
    request_id: str | None,
    operation: str | None,
    outcome: str,
    seconds: float,
    pbx_fetches: int,
    cache: str,
    client: str | None,
    codes: list[str],
) -> None:
    """The metrics and the log line of one GraphQL request (executed or not)."""
    if metrics is not None:
        requests, latency = metrics.request_series(operation, outcome)
        requests.inc()
        latency.observe(seconds)
        for code in codes:
            metrics.errors.labels(code).inc()
        if cache == "response":
            metrics.response_cache_hits.inc()
    if not logger.isEnabledFor(logging.INFO):
        return  # building the line costs more than the rest of a cached answer
    request_id = request_id or f"{getrandbits(64):016x}"  # uuid4 costs 7 µs
    duration_ms = round(seconds * 1000, 2)
    writer = direct_writer(logger)
    if writer is not None:
        # serve's set-up (the JSON handler alone): the finished line goes straight to the
        # writer thread; no LogRecord, no handler lock, no write on the event loop. The
        # keys and their order are JsonFormatter's; most of the line is a kind's.
        writer.submit(
            request_line(
                iso_time(time.time()),
                request_id,
                duration_ms,
                (operation, outcome, pbx_fetches, cache, client, tuple(codes)),
            )
        )
        return
    fields = {
        "request_id": request_id,
        "operation": operation,
        "outcome": outcome,
        "duration_ms": duration_ms,
        "pbx_fetches": pbx_fetches,
        "cache": cache,
        "client": client,
        "error_codes": codes,
    }
    logger.info(f"graphql {operation or 'anonymous'} {outcome}", extra={"fields": fields})
