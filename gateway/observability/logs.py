"""Logging set-up: one JSON object per line for ``serve``, readable text for ``demo``.

Structured fields travel in ``extra={"fields": {...}}`` and become top-level JSON keys.
A redacting filter sits on the handler, and the writer redacts every batch again, so every
record from every library (httpx's request line with ``?token=`` included) is scrubbed
before it is written.

Writing never happens on the event loop: :class:`QueuedLineHandler` formats a record into a
finished line and hands it to a :class:`~gateway.observability.log_writer.LineWriter`,
whose thread does the writing. The request log, one line per request, skips even the
``LogRecord``: :func:`direct_writer` gives it the writer itself when that handler is the only
one listening (the production set-up); with any other handler attached (a test's capture,
an operator's extra handler) it answers False and the line goes through ``logging``.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

from gateway.observability.log_writer import LineWriter, iso_time, json_line
from gateway.secrets import RedactingFilter

_ROOT = logging.getLogger()
_active: QueuedLineHandler | None = None
"""The handler :func:`configure_logging` installed last, if it is the JSON one."""


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...fields}`` on one line."""

    def entry(self, record: logging.LogRecord) -> dict[str, Any]:
        """The record as the dict that becomes its JSON line."""
        entry: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return entry

    def format(self, record: logging.LogRecord) -> str:
        return json_line(self.entry(record))[:-1].decode()


class TextFormatter(logging.Formatter):
    """Human-readable lines, structured fields appended as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, []))
        return line


class QueuedLineHandler(logging.Handler):
    """Formats each record on the caller's thread (cheap) and queues the line for the
    writer's thread (the write itself); never blocks, drops and counts when full."""

    def __init__(self, writer: LineWriter, formatter: logging.Formatter) -> None:
        super().__init__()
        self.writer = writer
        self.setFormatter(formatter)
        self._json = formatter if isinstance(formatter, JsonFormatter) else None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self._json is not None:
                line = json_line(self._json.entry(record))
            else:
                line = (self.format(record) + "\n").encode()
            self.writer.submit(line)
        except Exception:  # logging's own contract: report, never raise
            self.handleError(record)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
        super().close()


def configure_logging(
    level: str = "INFO", *, json_lines: bool = True, stream: IO[str] | None = None
) -> None:
    """Send every log record to ``stream`` (stderr), formatted, redacted, off the loop."""
    global _active
    previous = list(_ROOT.handlers)
    writer = LineWriter(stream if stream is not None else sys.stderr)
    handler = QueuedLineHandler(writer, JsonFormatter() if json_lines else TextFormatter())
    handler.addFilter(RedactingFilter())
    _ROOT.handlers[:] = [handler]
    _ROOT.setLevel(level.upper())
    _active = handler if json_lines else None
    for old in previous:
        if isinstance(old, QueuedLineHandler):
            old.close()  # its queued lines are written first
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # uvicorn's access log would be a second line per request; ours has more in it.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def direct_writer(logger: logging.Logger) -> LineWriter | None:
    """The writer to queue ``logger``'s finished JSON lines to, when the JSON handler is the
    only one that would see its records (then a line needs no ``LogRecord``); else None
    (the caller logs through ``logging``). The caller checks the level."""
    handler = _active
    handlers = _ROOT.handlers
    if handler is None or len(handlers) != 1 or handlers[0] is not handler:
        return None
    if logger.filters or logger.disabled:
        return None
    current: logging.Logger | None = logger
    while current is not None and current is not _ROOT:  # "gateway.request", "gateway"
        if current.handlers or not current.propagate:
            return None
        current = current.parent
    return handler.writer
