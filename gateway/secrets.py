"""Secrets that cannot leak by accident.

A :class:`Secret` hides its value from ``repr()``, ``str()`` and formatting; only
:meth:`Secret.reveal` gives it, and the only callers are the places that must send it
(the PBX login). :func:`redact` scrubs tokens out of text we do not control, such as
httpx's own request log line, which contains the full URL with ``?token=``.
"""

from __future__ import annotations

import logging
import re
from typing import Final

_TOKEN_IN_URL: Final = re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE)


class Secret:
    """A string that prints as ``'**********'``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself; call only where it must be sent."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def redact(text: str) -> str:
    """``text`` with every ``token=...`` query value replaced by ``token=<redacted>``."""
    return _TOKEN_IN_URL.sub(r"\1<redacted>", text)


class RedactingFilter(logging.Filter):
    """Rewrites log records so that no ``token=`` value survives formatting."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


def install_redaction(*logger_names: str) -> None:
    """Attach :class:`RedactingFilter` to the named loggers once each."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
