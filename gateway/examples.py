"""The examples the demo serves beside the gateway: ``/examples/web/``, a conference list.

``examples/web/`` is three plain files (``index.html``, ``app.js``, ``style.css``) and
urql's core, bundled into ``examples/web/vendor/`` by ``scripts/build-web-example`` (npm, at
build time; never committed, never fetched from a CDN at run time). Until that bundle exists
the page is replaced by one saying how to build it. The examples belong to the source
checkout, not to the wheel: installed from a wheel, ``/examples/web/`` says so instead.

Wiring: ``create_app(settings, extra_routes=example_routes())`` (``pbx-gateway demo``).
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

WEB_EXAMPLE_DIR: Final = Path(__file__).resolve().parent.parent / "examples" / "web"
WEB_EXAMPLE_URL: Final = "/examples/web/"
BUNDLE: Final = Path("vendor") / "urql-core.js"
BUILD_HINT: Final = "run scripts/build-web-example (make web-example), then reload this page"

# Only the gateway: the page's own files and its GraphQL endpoint, no inline code.
_CSP: Final = (
    "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_HEADERS: Final = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # an example being edited: always revalidate
}


class _ExampleFiles(StaticFiles):
    """The page's files with the page's headers; a missing folder is a 404, not a 500."""

    async def check_config(self) -> None:
        return None

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(_HEADERS)
        return response


def example_routes(directory: Path = WEB_EXAMPLE_DIR) -> list[BaseRoute]:
    """``/examples/web/`` (the page, or how to build it) and its files below it."""

    async def page(request: Request) -> Response:
        if not (directory / "index.html").is_file():
            return _explain(404, "The web example is part of the source checkout, not the wheel")
        if not (directory / BUNDLE).is_file():
            return _explain(503, f"The web example is not built yet: {BUILD_HINT}")
        return FileResponse(directory / "index.html", headers=_HEADERS)

    files = _ExampleFiles(directory=directory, check_dir=False)
    return [
        Route(WEB_EXAMPLE_URL, page, methods=["GET", "HEAD"]),
        Mount(WEB_EXAMPLE_URL.rstrip("/"), app=files, name="web-example"),
    ]


def _explain(status: int, message: str) -> Response:
    text = html.escape(message, quote=False)
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8" />'
        f"<title>Web example</title></head><body><p>{text}.</p></body></html>\n"
    )
    return HTMLResponse(page, status_code=status, headers=_HEADERS)
