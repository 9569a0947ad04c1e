"""A log writer off the event loop: finished lines in, one write per batch out.

The event loop hands each finished line (bytes, newline included) to :meth:`LineWriter.submit`,
which appends it to a bounded in-memory queue and returns at once: it never waits for a lock
held by the writer, for the disk or for a full pipe. A daemon thread gathers the queued lines
for a moment (``linger``), redacts the batch once and writes it with one call, so a busy
gateway pays one system call per batch instead of a write and a flush per line. When the
queue is full (the stream is slower than the log rate, or blocked), new lines are dropped and
counted (``dropped``, the ``gateway_log_lines_dropped_total`` metric), and the next batch
that gets written says how many were lost. Lines still queued when the process exits are
written by :meth:`LineWriter.close` (``logging.shutdown`` calls it through the handler).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections import deque
from datetime import UTC, datetime
from typing import IO, Any, Final

import orjson

from gateway.secrets import redact

DEFAULT_CAPACITY: Final = 10_000
"""Queued lines at most (a few MB of JSON); past it new lines are dropped and counted."""
DEFAULT_LINGER: Final = 0.05
"""Seconds the writer waits after the first queued line, so one write carries many lines
and the writer thread takes the GIL from the event loop a few dozen times a second, not
once per line. A crash loses at most this much of the log."""

_writers: weakref.WeakSet[LineWriter] = weakref.WeakSet()


class LineWriter:
    """A bounded queue of lines and the thread that writes them to ``stream``."""

    def __init__(
        self,
        stream: IO[str] | IO[bytes],
        *,
        capacity: int = DEFAULT_CAPACITY,
        linger: float = DEFAULT_LINGER,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity, self.linger = capacity, linger
        self.dropped = 0
        """Lines refused because the queue was full, since the start."""
        self.written = 0
        """Lines handed to the stream."""
        self._stream = stream
        self._lines: deque[bytes] = deque()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._reported = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        self._start()
        _writers.add(self)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def submit(self, line: bytes) -> bool:
        """Queue ``line``; False (and one more drop counted) when the queue is full.

        Only ``deque`` operations, atomic under the GIL: no lock the writer could hold."""
        lines = self._lines
        if len(lines) >= self.capacity:
            self.dropped += 1
            return False
        was_empty = not lines
        lines.append(line)
        if was_empty:
            self._wake.set()  # the writer sleeps until there is work (or its timeout)
        return True

    @property
    def queued(self) -> int:
        """Lines waiting to be written."""
        return len(self._lines)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every line queued so far is written (or ``timeout``); whether it was."""
        end = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while self._lines or self._busy:
                left = end - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the thread."""
        self.flush(timeout)
        self._closing = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        lines = self._lines
        while not self._closing:
            # The timeout only bounds the delay of a line queued in a narrow race with the
            # drain below (seen the queue non-empty, appended after it emptied).
            self._wake.wait(1.0)
            if self._closing:
                break
            if self.linger > 0 and len(lines) < self.capacity // 2:
                time.sleep(self.linger)
            self._wake.clear()  # before draining: a line queued after this wakes us again
            with self._idle:
                self._busy = True
            try:
                while lines:
                    batch = [lines.popleft() for _ in range(len(lines))]
                    self._write(batch)
            finally:
                with self._idle:
                    self._busy = False
                    self._idle.notify_all()

    def _write(self, batch: list[bytes]) -> None:
        if self.dropped != self._reported:
            lost, self._reported = self.dropped - self._reported, self.dropped
            batch.append(dropped_notice(lost))
        # The whole batch is checked at once: no token= value reaches the stream, whatever
        # wrote the line (the request log formats its own, without a LogRecord). A plain
        # search in C first; the regex (microseconds per line) only where it can match.
        data = b"".join(batch)
        if b"token=" in data.lower():
            data = redact(data.decode("utf-8", "replace")).encode()
        with contextlib.suppress(Exception):  # a broken stream must not kill the writer
            binary = getattr(self._stream, "buffer", None)
            if binary is not None:
                binary.write(data)
                binary.flush()
            else:
                stream: Any = self._stream
                stream.write(data if _wants_bytes(stream) else data.decode("utf-8", "replace"))
                stream.flush()
        self.written += len(batch)

    def _after_fork(self) -> None:
        """A forked child has the queue but not the thread: start its own."""
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        if not self._closing:
            self._start()


def _wants_bytes(stream: Any) -> bool:
    mode = getattr(stream, "mode", "")
    return isinstance(mode, str) and "b" in mode


def dropped_notice(count: int) -> bytes:
    """The line that says ``count`` lines were lost."""
    return json_line(
        {
            "time": iso_time(time.time()),
            "level": "warning",
            "logger": "gateway.log",
            "message": f"{count} log lines dropped: the log stream could not keep up",
            "dropped": count,
        }
    )


def json_line(entry: dict[str, Any]) -> bytes:
    """``entry`` as one JSON line (orjson; anything it cannot encode becomes ``str``)."""
    return orjson.dumps(
        entry, default=str, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
    )


_second: tuple[int, str] = (-1, "")
"""The last whole second :func:`iso_time` formatted, and its text (one tuple: replaced whole,
so a thread never reads one second's number with another's text)."""


def iso_time(created: float) -> str:
    """``2026-01-02T03:04:05.678+00:00`` (what ``isoformat(timespec="milliseconds")`` gives),
    formatting the date and time once per second."""
    global _second
    whole = int(created)
    cached = _second
    if cached[0] != whole:
        cached = (whole, datetime.fromtimestamp(whole, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        _second = cached
    millis = int((created - whole) * 1000)
    return f"{cached[1]}.{millis:03d}+00:00"


def dropped_lines() -> int:
    """Lines dropped by every live writer of this process (the metric's value)."""
    return sum(writer.dropped for writer in list(_writers))


def _restart_after_fork() -> None:
    for writer in list(_writers):
        writer._after_fork()


os.register_at_fork(after_in_child=_restart_after_fork)
