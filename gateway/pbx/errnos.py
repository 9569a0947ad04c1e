"""What each PBX ``errno`` means, and how the gateway reads it.

The table is ``pbx-api.md``'s "Error numbers" section. Codes are strings on the wire
(an int is accepted too, see :func:`normalize_errno`).
"""

from __future__ import annotations

from typing import Final

TOKEN_ERRNOS: Final = frozenset({"20004", "20005", "20006"})
"""No such token / token blank / token timed out: log in again and retry once."""

TRANSIENT_ERRNOS: Final = frozenset({"20010", "30001", "30003"})
"""PBX-side trouble that passes on its own: the PBX could not answer right now."""

BAD_CREDENTIALS: Final = "20003"
LOCKED_OUT: Final = "20002"
APPLIED_TOO_OFTEN: Final = "10025"

_MEANINGS: Final[dict[str, str]] = {
    "10002": "unsupported XML data format",
    "10003": "unsupported API request (unknown endpoint, or firmware older than 30.13.0.30)",
    "10004": "a required parameter is blank",
    "10017": "extension configuration failed",
    "10025": "configuration applied too often",
    "20000": "only JSON is supported",
    "20001": "only POST is supported",
    "20002": "login failed: this IP address is locked out",
    "20003": "login failed: bad username or password",
    "20004": "no such token",
    "20005": "token blank",
    "20006": "token timed out",
    "20007": "request data blank",
    "20008": "port error",
    "20009": "request blank",
    "20010": "handing the request to the API process failed",
    "30001": "JSON memory allocation failed",
    "30003": "API process not running",
}


def normalize_errno(raw: object) -> str | None:
    """The errno as a string of digits, or None when the PBX gave none we can read."""
    if isinstance(raw, bool):  # bool is an int subclass; True is no errno
        return None
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, str) and raw.strip().isdigit():
        return raw.strip()
    return None


def errno_meaning(errno: str | None) -> str:
    """A person-readable meaning for ``errno``; undocumented codes say so."""
    if errno is None:
        return "the PBX reported a failure without an errno"
    return _MEANINGS.get(errno, f"undocumented errno {errno}")
