"""The request log's writer: off the event loop, bounded, counting what it drops, redacting."""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import generate_latest

from gateway.observability import request_log
from gateway.observability.log_writer import LineWriter, dropped_lines, iso_time, json_line
from gateway.observability.logs import JsonFormatter, configure_logging, direct_writer
from gateway.observability.metrics import Metrics


class StuckStream(io.StringIO):
    """A stream whose first write waits until the test releases it (a full pipe)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        self.release.wait(30)
        return super().write(text)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The root logger's handlers and level as they were, the test's writers closed."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def test_log_writer_never_blocks_and_counts_drops() -> None:
    """With the stream stuck in a write, submit still returns at once: the queue takes
    ``capacity`` lines, the rest are dropped and counted (metric included), and once the
    stream moves every kept line is written with a notice of the loss."""
    stream = StuckStream()
    writer = LineWriter(stream, capacity=50, linger=0)
    try:
        writer.submit(b"first\n")
        assert stream.entered.wait(10)  # the writer thread is inside the stuck write
        accepted = [writer.submit(f"line {i}\n".encode()) for i in range(57)]
        assert accepted == [True] * 50 + [False] * 7
        assert (writer.dropped, writer.queued) == (7, 50)
        assert dropped_lines() >= 7
        exposition = generate_latest(Metrics().registry).decode()
        assert f"gateway_log_lines_dropped_total {float(dropped_lines())}" in exposition
        stream.release.set()
        assert writer.flush(10)
    finally:
        stream.release.set()
        writer.close()
    lines = stream.getvalue().splitlines()
    assert lines[:2] == ["first", "line 0"]
    assert lines[-2] == "line 49"
    notice = json.loads(lines[-1])
    assert (notice["level"], notice["dropped"]) == ("warning", 7)
    assert writer.written == 52


def test_log_writer_redacts_tokens_in_every_batch() -> None:
    """A token= value is scrubbed whatever queued the line, with or without a LogRecord."""
    stream = io.StringIO()
    writer = LineWriter(stream, linger=0)
    writer.submit(b'{"url": "https://pbx/api?TOKEN=abc123&x=1"}\n')
    writer.submit(b'{"message": "plain"}\n')
    writer.close()
    text = stream.getvalue()
    assert "abc123" not in text
    assert "TOKEN=<redacted>&x=1" in text
    assert '{"message": "plain"}' in text


def test_request_log_shipped_line_is_the_formatter_line(restore_logging: None) -> None:
    """Under serve's set-up the request line skips logging yet has JsonFormatter's keys,
    order and time format; a token in a client name is redacted on the way out."""
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    logger = logging.getLogger("gateway.request")
    assert direct_writer(logger) is not None
    request_log.record(
        None, request_id="abcdef0123456789", operation="Wall", outcome="ok", seconds=0.0123,
        pbx_fetches=1, cache="miss", client="svc?token=s3cr3t", codes=["X"],
    )  # fmt: skip
    logging.getLogger().handlers[0].flush()
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert "s3cr3t" not in line
    assert list(entry) == ["time", "level", "logger", "message", "request_id", "operation",
                           "outcome", "duration_ms", "pbx_fetches", "cache", "client",
                           "error_codes"]  # fmt: skip
    assert entry["message"] == "graphql Wall ok"
    assert (entry["duration_ms"], entry["client"]) == (12.3, "svc?token=<redacted>")
    record = logging.LogRecord("gateway.request", logging.INFO, "", 0, "m", None, None)
    assert len(entry["time"]) == len(json.loads(JsonFormatter().format(record))["time"])


def test_request_log_goes_through_logging_when_another_handler_listens(
    restore_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A second handler on the path (here pytest's capture) gets the request record: the
    direct path steps aside rather than bypass it."""
    configure_logging("INFO", stream=io.StringIO())
    logging.getLogger().addHandler(caplog.handler)
    assert direct_writer(logging.getLogger("gateway.request")) is None
    request_log.record(
        None, request_id=None, operation=None, outcome="ok", seconds=0.001,
        pbx_fetches=0, cache="hit", client="c", codes=[],
    )  # fmt: skip
    (record,) = [r for r in caplog.records if r.name == "gateway.request"]
    assert record.getMessage() == "graphql anonymous ok"
    assert len(record.fields["request_id"]) == 16  # type: ignore[attr-defined]


def test_iso_time_matches_datetime_isoformat() -> None:
    """The once-per-second cache gives the same text as ``isoformat(timespec="milliseconds")``."""
    from datetime import UTC, datetime

    for created in (0.0, 1_700_000_000.5, 1_700_000_000.999, 1_700_000_001.0405):
        expected = datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds")
        assert iso_time(created) == expected


class Piped:
    """A stream over a pipe's write end that counts the ``os.write`` calls made to it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.read_end, self.write_end = os.pipe()
        self.writes = 0
        real = os.write

        def counted(fd: int, data: Any) -> int:
            if fd == self.write_end:
                self.writes += 1
            return real(fd, data)

        monkeypatch.setattr(os, "write", counted)

    def fileno(self) -> int:
        return self.write_end

    def flush(self) -> None:
        pass

    def read_all(self) -> bytes:
        os.close(self.write_end)
        with os.fdopen(self.read_end, "rb") as reader:
            return reader.read()


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "the writer did not get there"
        time.sleep(0.002)


def test_log_writer_lingers_writes_in_batches_and_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """While lines come, the writer waits its linger (here 30 s) instead of writing at once;
    the queue reaching a quarter of its capacity wakes it early, and a flush writes the
    rest at once: every line once, in order, one ``os.write`` per batch."""
    stream = Piped(monkeypatch)
    writer = LineWriter(stream, capacity=400, linger=30.0)  # type: ignore[arg-type]
    try:
        for i in range(99):
            assert writer.submit(b"%d\n" % i)
        time.sleep(0.05)  # the writer woke for the first line, then lingers
        assert (writer.written, stream.writes) == (0, 0)
        writer.submit(b"99\n")  # the early mark: capacity // 4
        wait_for(lambda: writer.written == 100)
        assert stream.writes == 1
        for i in range(100, 250):
            writer.submit(b"%d\n" % i)
        assert writer.flush(10)
        assert writer.written == 250 and stream.writes <= 3
    finally:
        writer.close()
    assert stream.read_all().splitlines() == [b"%d" % i for i in range(250)]


def test_log_writer_close_writes_what_is_queued_without_the_linger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Shutdown does not wait for the linger: what is queued is written, then the thread ends."""
    stream = Piped(monkeypatch)
    writer = LineWriter(stream, capacity=100, linger=60.0)  # type: ignore[arg-type]
    for i in range(5):
        writer.submit(b"line %d\n" % i)
    started = time.monotonic()
    writer.close(timeout=10)
    assert time.monotonic() - started < 30  # far below the linger
    assert writer._thread is not None and not writer._thread.is_alive()
    assert stream.read_all().splitlines() == [b"line %d" % i for i in range(5)]


def test_log_writer_sleeps_idle_and_wakes_for_the_next_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a batch the writer sleeps until a line comes (no polling), and one line
    after a quiet spell is written within the linger."""
    stream = Piped(monkeypatch)
    writer = LineWriter(stream, capacity=100, linger=0.01)  # type: ignore[arg-type]
    try:
        writer.submit(b"a\n")
        wait_for(lambda: writer.written == 1)
        wait_for(lambda: writer._idle)
        writer.submit(b"b\n")
        wait_for(lambda: writer.written == 2)
    finally:
        writer.close()
    assert stream.read_all() == b"a\nb\n" and stream.writes == 2


@pytest.mark.parametrize(
    ("request_id", "duration_ms", "kind"),
    [
        ("abcdef0123456789", 0.12, ("Wall", "ok", 0, "response", "anonymous@127.0.0.1", ())),
        ('a"b\\c', 0.0, (None, "error", 3, "miss", None, ("PBX_UNAVAILABLE", "X"))),
        ("id", 12345.67, ('Räume "x"\n', "stale", 1, "stale", "svc?token=s3cr3t", ("Ü",))),
        ("id", 1e-05, ("\u2028", "ok", 0, "hit", "c", ())),
    ],
)
def test_request_line_is_json_line_of_the_formatters_entry(
    request_id: str, duration_ms: float, kind: request_log.Constant
) -> None:
    """The line assembled from a kind's parts is byte for byte ``json_line`` of the entry
    JsonFormatter's keys make, asked twice (the second from the kept parts)."""
    operation, outcome, pbx_fetches, cache, client, codes = kind
    entry = {
        "time": "2026-01-02T03:04:05.678+00:00",
        "level": "info",
        "logger": "gateway.request",
        "message": f"graphql {operation or 'anonymous'} {outcome}",
        "request_id": request_id,
        "operation": operation,
        "outcome": outcome,
        "duration_ms": duration_ms,
        "pbx_fetches": pbx_fetches,
        "cache": cache,
        "client": client,
        "error_codes": list(codes),
    }
    for _ in range(2):
        line = request_log.request_line(entry["time"], request_id, duration_ms, kind)  # type: ignore[arg-type]
        assert line == json_line(entry)
