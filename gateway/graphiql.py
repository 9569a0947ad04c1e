"""GraphiQL served by the gateway itself: strawberry's page without the CDN.

strawberry's GraphiQL page loads React, GraphiQL and the explorer plugin from unpkg.com,
so it stays blank wherever the browser has no internet (a laptop on the PBX's network).
This page loads the same files (same versions, same SRI hashes) from the gateway, under
``/graphiql-assets/``. They are committed in ``gateway/static/graphiql/`` with their
licences and ship in the wheel and the image (``scripts/fetch-graphiql-assets`` fetched
them from the npm registry and checked each against its pinned hash; a test checks them
again). ``manifest.json`` there tells this module which file plays which role.
``Settings.graphiql_assets_dir`` (``GATEWAY_GRAPHIQL_ASSETS_DIR``) may point elsewhere;
a folder without them gets a page saying so (HTTP 503) instead of failing in the browser.

The page itself (HTML template, style, script) is package data in ``gateway/templates/``.
It carries a strict Content-Security-Policy: scripts and styles only from the gateway
plus the page's one inline script and one inline style, allowed by their hashes (both
are constant, the GraphQL path reaches the script through a data attribute). One thing
it blocks on purpose: the ``<style>`` GraphiQL's dialogs inject to stop the page
scrolling under them (react-remove-scroll); the page never scrolls anyway.

Wiring: ``routes=[..., *graphiql_routes(directory=...)]``, and in the GraphQL view
``async def render_graphql_ide(self, request): return render_graphiql_page(request.url.path,
directory=...)``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

PACKAGED_ASSETS_DIR: Final = Path(__file__).parent / "static" / "graphiql"
ASSETS_URL: Final = "/graphiql-assets"
MANIFEST: Final = "manifest.json"
# Roles in the manifest, in page order (stylesheets, then scripts in dependency order).
STYLE_ROLES: Final = ("graphiql.css", "explorer.css")
HEAD_SCRIPT_ROLES: Final = ("react", "react-dom", "js-cookie")
BODY_SCRIPT_ROLES: Final = ("graphiql.js", "explorer.js")
ROLES: Final = STYLE_ROLES + HEAD_SCRIPT_ROLES + BODY_SCRIPT_ROLES

_SAFE_PATH: Final = re.compile(r"[A-Za-z0-9@._-]+/[A-Za-z0-9._-]+")
_SRI: Final = re.compile(r"sha(256|384|512)-[A-Za-z0-9+/]+={0,2}")
_MEDIA_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
}

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Asset:
    path: str  # relative to the assets folder, e.g. "react@18.2.0/react.production.min.js"
    integrity: str  # SRI, e.g. "sha384-..."


def _load_manifest(directory: Path) -> dict[str, _Asset] | None:
    """Every role's file, when the manifest names them all and each file is there."""
    try:
        recorded = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))["assets"]
        assets = {
            role: _Asset(str(recorded[role]["path"]), str(recorded[role]["integrity"]))
            for role in ROLES
        }
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for asset in assets.values():
        # The manifest is ours, but it ends up in HTML: accept only plain shapes.
        if not (_SAFE_PATH.fullmatch(asset.path) and _SRI.fullmatch(asset.integrity)):
            return None
        if not (directory / asset.path).is_file():
            return None
    return assets


def graphiql_assets_available(directory: Path | None = None) -> bool:
    """Whether the GraphiQL page can be served (every file it loads is installed)."""
    return _load_manifest(directory or PACKAGED_ASSETS_DIR) is not None


# --- the page ----------------------------------------------------------------------------

TEMPLATES: Final = resources.files("gateway") / "templates"


def _template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


_PAGE: Final = string.Template(_template("graphiql.html"))
_STYLE: Final = _template("graphiql.css")
_SCRIPT: Final = _template("graphiql.js")
# strawberry's favicon, an inline SVG (hence img-src data:).
_ICON: Final = (
    "data:image/svg+xml,<svg xmlns=%22http://www.w3.org/2000/svg%22 viewBox=%220 0 100 100%22>"
    "<text y=%22.9em%22 font-size=%2280%22>&#x1f353;</text></svg>"
)


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


PAGE_CSP: Final = "; ".join(
    [
        "default-src 'none'",
        f"script-src 'self' {_csp_hash(_SCRIPT)}",
        f"style-src 'self' {_csp_hash(_STYLE)}",
        "img-src 'self' data:",
        "font-src 'self' data:",  # GraphiQL's CSS embeds its fonts
        "connect-src 'self'",  # the GraphQL endpoint
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_MISSING_CSP: Final = (
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
MISSING_MESSAGE: Final = (
    "GraphiQL's assets are missing: GATEWAY_GRAPHIQL_ASSETS_DIR names a folder without them, "
    "or this installation of pbx-gateway is incomplete (reinstall it)"
)


def render_graphiql_page(
    graphql_path: str = "/graphql", *, assets_url: str = ASSETS_URL, directory: Path | None = None
) -> HTMLResponse:
    """strawberry's GraphiQL page with same-origin assets, or a 503 saying how to get them."""
    folder = directory or PACKAGED_ASSETS_DIR
    assets = _load_manifest(folder)
    if assets is None:
        logger.warning("%s (looked in %s)", MISSING_MESSAGE, folder)
        return HTMLResponse(
            _MISSING_PAGE,
            status_code=503,
            headers={
                **SECURITY_HEADERS,
                "Content-Security-Policy": _MISSING_CSP,
                "Cache-Control": "no-store",
            },
        )
    base = html.escape(assets_url.rstrip("/"), quote=True)

    def url(role: str) -> str:
        return f"{base}/{html.escape(assets[role].path, quote=True)}"

    def integrity(role: str) -> str:
        return html.escape(assets[role].integrity, quote=True)

    def styles(roles: tuple[str, ...]) -> str:
        return "".join(
            f'\n    <link rel="stylesheet" href="{url(r)}" integrity="{integrity(r)}" />'
            for r in roles
        )

    def scripts(roles: tuple[str, ...]) -> str:
        return "".join(
            f'\n    <script src="{url(r)}" integrity="{integrity(r)}"></script>' for r in roles
        )

    endpoint = html.escape(graphql_path, quote=True)
    head = scripts(HEAD_SCRIPT_ROLES) + styles(STYLE_ROLES)
    body = scripts(BODY_SCRIPT_ROLES)
    page = _PAGE.substitute(
        icon=_ICON, style=_STYLE, head=head, endpoint=endpoint, body=body, script=_SCRIPT
    )
    return HTMLResponse(
        page,
        headers={
            **SECURITY_HEADERS,
            "Content-Security-Policy": PAGE_CSP,
            "Cache-Control": "no-cache",
        },
    )


_MISSING_PAGE: Final = string.Template(_template("graphiql-missing.html")).substitute(
    message=html.escape(MISSING_MESSAGE, quote=False)
)


# --- the assets --------------------------------------------------------------------------


class _AssetFiles(StaticFiles):
    """StaticFiles for the assets: explicit types, nosniff, long caching of versioned files,
    and a 404 (not a 500) when the folder is missing, since the page already explains that."""

    async def check_config(self) -> None:
        return None

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        name = os.fspath(full_path)
        media_type = _MEDIA_TYPES.get(os.path.splitext(name)[1])
        if media_type is not None and response.status_code == 200:
            response.headers["Content-Type"] = media_type
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
        # A file under "<package>@<version>/" never changes; the manifest may.
        versioned = "@" in os.path.basename(os.path.dirname(name))
        response.headers["Cache-Control"] = (
            "public, max-age=31536000, immutable" if versioned else "no-cache"
        )
        return response


def graphiql_routes(
    *, assets_url: str = ASSETS_URL, directory: Path | None = None
) -> list[BaseRoute]:
    """The route serving the page's assets (mount it beside ``/graphql``)."""
    folder = directory or PACKAGED_ASSETS_DIR
    files = _AssetFiles(directory=folder, check_dir=False)
    return [Mount(assets_url.rstrip("/"), app=files, name="graphiql-assets")]


def asks_for_ide(method: str, params: Mapping[str, Any], headers: Mapping[str, str]) -> bool:
    """A browser asking for the GraphiQL page: GET, HTML, and no GraphQL document in the URL
    (GraphiQL keeps its own state, e.g. ``?q=``, in the URL; that is still the page)."""
    return (
        method == "GET"
        and "query" not in params
        and "extensions" not in params
        and "text/html" in headers.get("accept", "")
    )
