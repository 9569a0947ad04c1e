"""A log writer off the event loop: finished lines in, one write per batch out.

The event loop hands each finished line (bytes, newline included) to :meth:`LineWriter.submit`,
which appends it to a bounded in-memory queue and returns at once: it never waits for a lock
held by the writer, for the disk or for a full pipe. A daemon thread writes the queued lines
in batches, in order: one ``os.write`` per batch (the stream's own ``write`` when it has no
file descriptor), the batch redacted once.

The writer's cost under load is not the write but the thread itself: each time it wakes it
must take the GIL from the event loop, and on a machine whose cores are busy with other
work the loop then waits until the OS schedules the writer (the request log once cost a
busy gateway a fifth of its rate and most of its p99 that way). So the writer wakes as
rarely as the log's promises allow:

- while lines keep coming it wakes once per ``linger`` (a batch gathers in between), and
  the loop does not signal it per batch, only when it sleeps idle (the first line after a
  quiet spell wakes it) or when the queue reaches a quarter of ``capacity`` (a burst is
  written early, so memory stays bounded and nothing is dropped that need not be);
- each wake takes the GIL twice: to take the batch, and back from the write.

When the queue is full (the stream is slower than the log rate, or blocked), new lines are
dropped and counted (``dropped``, the ``gateway_log_lines_dropped_total`` metric), and the
next batch that gets written says how many were lost. Lines still queued when the process
exits are written by :meth:`LineWriter.close` (``logging.shutdown`` calls it through the
handler); :meth:`LineWriter.flush` writes what is queued at once, without the linger.
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
DEFAULT_LINGER: Final = 0.1
"""Seconds between two batches while lines keep coming, so one write carries many lines
and the writer thread takes the GIL from the event loop a few times a second, not once per
line or per burst. A crash loses at most this much of the log."""
EARLY_SHARE: Final = 4
"""The writer is woken before its linger ends once ``capacity // EARLY_SHARE`` lines wait."""

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
        """Lines handed to the stream (notices of drops included)."""
        self._stream = stream
        self._early = max(1, capacity // EARLY_SHARE)
        self._lines: deque[bytes] = deque()
        self._accepted = 0
        self._done = 0  # accepted lines written (or lost to a broken stream): flush's mark
        self._wake = threading.Event()
        self._idle = False  # the writer sleeps until a line comes: the next submit wakes it
        self._hurry = 0  # flushes waiting: no linger meanwhile
        self._hurrying = threading.Lock()  # flushes may come from several threads
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

        Only ``deque`` operations and plain attributes, atomic under the GIL: no lock the
        writer could hold, and no signal to the writer unless it sleeps idle or the queue
        reached the early mark."""
        lines = self._lines
        if len(lines) >= self.capacity:
            self.dropped += 1
            return False
        lines.append(line)
        self._accepted += 1
        if self._idle:
            self._idle = False
            self._wake.set()
        elif len(lines) == self._early:
            self._wake.set()
        return True

    @property
    def queued(self) -> int:
        """Lines waiting to be written."""
        return len(self._lines)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every line queued so far is written (or ``timeout``); whether it was."""
        end = time.monotonic() + timeout
        mark = self._accepted
        with self._hurrying:
            self._hurry += 1
        try:
            self._wake.set()
            while self._done < mark:
                if time.monotonic() >= end or self._thread is None or not self._thread.is_alive():
                    return False
                time.sleep(0.001)
            return True
        finally:
            with self._hurrying:
                self._hurry -= 1

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the thread."""
        self.flush(timeout)
        self._closing = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        lines, wake = self._lines, self._wake
        while True:
            if not lines:
                if self._closing:
                    return
                wake.clear()
                self._idle = True  # then look again: a line queued before this is seen
                if not lines and not self._closing:
                    wake.wait()
                self._idle = False
                continue
            if self.linger > 0 and len(lines) < self._early and not self._hurry:
                wake.clear()  # set again by the early mark, a flush or close
                if not self._closing:
                    wake.wait(self.linger)
            batch = [lines.popleft() for _ in range(len(lines))]
            taken = len(batch)
            self._write(batch)
            self._done += taken

    def _write(self, batch: list[bytes]) -> None:
        if self.dropped != self._reported:
            lost, self._reported = self.dropped - self._reported, self.dropped
            batch.append(dropped_notice(lost))
        # The whole batch is checked at once: no token= value reaches the stream, whatever
        # wrote the line (the request log formats its own, without a LogRecord). Two plain
        # searches in C first (every match ends in n= or N=), then the lowered copy, and
        # the regex (microseconds per line) only where it can match.
        data = b"".join(batch)
        if (b"n=" in data or b"N=" in data) and b"token=" in data.lower():
            data = redact(data.decode("utf-8", "replace")).encode()
        with contextlib.suppress(Exception):  # a broken stream must not kill the writer
            _write_to(self._stream, data)
        self.written += len(batch)

    def _after_fork(self) -> None:
        """A forked child has the queue but not the thread: start its own."""
        self._wake = threading.Event()
        self._idle = False
        self._hurry = 0
        self._hurrying = threading.Lock()
        if not self._closing:
            self._start()


def _write_to(stream: Any, data: bytes) -> None:
    """``data`` to ``stream``: one ``os.write`` to its descriptor (after whatever its own
    buffer holds, so the order stays), or its ``write`` when it has none."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        fd = None
    if fd is not None:
        stream.flush()
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:  # a descriptor someone set non-blocking: wait for room
                time.sleep(0.001)
        return
    binary = getattr(stream, "buffer", None)
    if binary is not None:
        binary.write(data)
        binary.flush()
    else:
        stream.write(data if _wants_bytes(stream) else data.decode("utf-8", "replace"))
        stream.flush()


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
