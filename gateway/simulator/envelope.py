"""The PBX's answer envelope: HTTP 200, a JSON body, Boa's headers, and the errno numbers.

Every API answer, success or failure, goes out through ``pbx_answer`` so the headers the real
device sends (``Server: Boa/...``, ``Connection: close``; see the response example in
``seed/query-conference.txt``) are never forgotten, and errno values are always strings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

# The errno values the simulator answers (meanings from pbx-api.md's errno table).
UNSUPPORTED_REQUEST = "10003"  # unknown endpoint
PARAMETER_BLANK = "10004"
ONLY_JSON = "20000"
ONLY_POST = "20001"
IP_LOCKED = "20002"
BAD_CREDENTIALS = "20003"
NO_SUCH_TOKEN = "20004"  # noqa: S105 - an errno, not a secret
TOKEN_BLANK = "20005"  # noqa: S105 - an errno, not a secret
TOKEN_TIMED_OUT = "20006"  # noqa: S105 - an errno, not a secret
DATA_BLANK = "20007"
PORT_ERROR = "20008"
API_HANDOFF_FAILED = "20010"  # PBX-side, transient: the simulator's answer to its own bugs

BOA_HEADERS = {
    "Server": "Boa/0.94.14rc21",
    "Accept-Ranges": "bytes",
    # One request per TCP connection, as the device does.
    "Connection": "close",
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS, PUT, DELETE",
}


def pbx_answer(payload: Mapping[str, Any]) -> Response:
    """An HTTP 200 JSON answer with the device's headers."""
    body = json.dumps(payload).encode("utf-8")
    return Response(body, status_code=200, headers=BOA_HEADERS, media_type="application/json")


def success(**fields: Any) -> Response:
    """``{"status": "Success", ...fields}``."""
    return pbx_answer({"status": "Success", **fields})


def failed(errno: str, **extra: Any) -> Response:
    """``{"status": "Failed", "errno": "<errno>"}``, with any extra keys the PBX may add."""
    return pbx_answer({"status": "Failed", "errno": str(errno), **extra})
