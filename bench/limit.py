"""The ceiling: a bare Starlette app that answers each request with the gateway's bytes.

It does what any HTTP service on this stack must do (uvicorn parses the request, Starlette
routes it and reads the body, the same response bytes go back) and nothing of GraphQL, so
``gateway rps / limit rps`` is the share of the HTTP ceiling the gateway reaches. The
replies are captured from the running gateway first, keyed by the exact request body.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Replies = Mapping[bytes, bytes]
"""Request body -> the gateway's response body for it."""


def create_limit_app(replies: Replies) -> Starlette:
    """Replay ``replies``; a body it was not given gets the first reply."""
    table = dict(replies)
    if not table:
        raise ValueError("the limit app needs at least one captured reply")
    first = next(iter(table.values()))

    async def graphql(request: Request) -> Response:
        body = await request.body()
        return Response(table.get(body, first), media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return Starlette(
        routes=[
            Route("/graphql", graphql, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def save_replies(path: Path, replies: Replies) -> None:
    """Write ``replies`` as JSON (base64, so the bytes survive exactly)."""
    pairs = [[_b64(request), _b64(response)] for request, response in replies.items()]
    path.write_text(json.dumps(pairs))


def load_replies(path: Path) -> dict[bytes, bytes]:
    """Read what :func:`save_replies` wrote."""
    pairs = json.loads(path.read_text())
    return {base64.b64decode(request): base64.b64decode(response) for request, response in pairs}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
