"""The PBX's ``errordata`` hint on a ``Failed`` answer, made safe to show a client.

A failure may carry an ``errordata`` key (``pbx-api.md``, Transport; a ``conference/update``
with a bad field names the field there). It helps the caller fix the request, so it is
passed on in GraphQL ``extensions.errordata``, but only after it is made harmless: its shape
is unknown (a string, a list, an object), it is upstream text, and it could echo what the
gateway sent. So the hint becomes one line of printable ASCII of bounded length, with the
token, every password-like value of the request (the login's MD5, room PINs) and any long
hex run (what tokens and MD5s look like) replaced by ``[redacted]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

MAX_LENGTH: Final = 200
"""Characters kept: enough for a field name or a short list of them."""

REDACTED: Final = "[redacted]"
_HEX_RUN: Final = re.compile(r"[0-9A-Fa-f]{16,}")
_NOT_PRINTABLE: Final = re.compile(r"[^\x20-\x7e]+")
_SPACES: Final = re.compile(r"\s{2,}")


def sanitize_errordata(raw: object, *, secrets: Iterable[str] = ()) -> str | None:
    """``raw`` as one safe line, or None when there is nothing to show."""
    if raw is None or raw == "" or raw == [] or raw == {}:
        return None
    text = _flatten(raw)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _HEX_RUN.sub(REDACTED, text)
    text = _SPACES.sub(" ", _NOT_PRINTABLE.sub(" ", text)).strip()
    if len(text) > MAX_LENGTH:
        text = text[: MAX_LENGTH - 3].rstrip() + "..."
    return text or None


def request_secrets(token: str | None, body: Mapping[str, Any] | None) -> list[str]:
    """What of a request must never come back in a hint: the token and password-like values
    (``password`` at login, ``participantepassword`` / ``moderatorpassword`` on an update)."""
    found = [token] if token else []
    for key, value in (body or {}).items():
        if "password" in str(key).lower() and isinstance(value, str) and value:
            found.append(value)
    return found


def _flatten(raw: object) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list) and all(isinstance(item, str | int | float) for item in raw):
        return ",".join(str(item) for item in raw)
    try:
        return json.dumps(raw, separators=(",", ":"), sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(raw)
