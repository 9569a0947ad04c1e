"""The request log's writer: off the event loop, bounded, counting what it drops, redacting."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest

from gateway.observability import request_log
from gateway.observability.log_writer import LineWriter, dropped_lines, iso_time
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
