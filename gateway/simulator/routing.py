"""Routes that take every HTTP method, so no request ever meets Starlette's own 405 page.

Starlette gives a plain function endpoint ``methods=["GET"]`` when none are named; an ASGI
callable object keeps ``methods=None`` (any method), so each handler is wrapped in one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

RequestHandler = Callable[[Request], Awaitable[Response]]


class _AnyMethod:
    """An ASGI app that answers every method through ``handler``."""

    def __init__(self, handler: RequestHandler) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(Request(scope, receive, send))
        await response(scope, receive, send)


def any_method_route(path: str, handler: RequestHandler) -> Route:
    """A route for ``path`` that passes every method to ``handler``."""
    return Route(path, _AnyMethod(handler))
