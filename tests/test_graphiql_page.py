"""The self-hosted GraphiQL page (``gateway/graphiql.py``) on a small Starlette app.

The assets come from ``scripts/fetch-graphiql-assets``; a session fixture runs it once
when they are missing (it needs the npm registry, as CI has).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.graphiql import (
    ASSETS_DIR_VARIABLE,
    MANIFEST,
    MISSING_MESSAGE,
    PACKAGED_ASSETS_DIR,
    graphiql_assets_available,
    graphiql_assets_dir,
    graphiql_routes,
    render_graphiql_page,
)

FETCH_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "fetch-graphiql-assets"


@pytest.fixture(scope="session")
def assets() -> Path:
    """The installed assets folder, fetched from the npm registry if need be."""
    folder = graphiql_assets_dir()
    if not graphiql_assets_available(folder):
        subprocess.run(  # noqa: S603 - our own script, fixed arguments
            [sys.executable, str(FETCH_SCRIPT), "--dest", str(folder)], check=True, timeout=600
        )
    assert graphiql_assets_available(folder)
    return folder


def graphiql_app(folder: Path) -> Starlette:
    """The page at /graphql and its assets, as the gateway wires them."""

    async def page(request: Request) -> Response:
        return render_graphiql_page(request.url.path, directory=folder)

    return Starlette(routes=[Route("/graphql", page), *graphiql_routes(directory=folder)])


def app_client(folder: Path) -> httpx.AsyncClient:
    """An httpx client speaking to ``graphiql_app(folder)`` in-process (it has no lifespan)."""
    transport = httpx.ASGITransport(app=graphiql_app(folder))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway.test")


@pytest.fixture
async def client(assets: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(assets) as client:
        yield client


class PageParts(HTMLParser):
    """The URLs a page loads (with their integrity) and its inline scripts and styles."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.loads: list[tuple[str, str, str | None]] = []  # (tag, url, integrity)
        self.inline: dict[str, list[str]] = {"script": [], "style": []}
        self.graphql_path: str | None = None
        self._open: str | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        url = found.get("src") or found.get("href")
        if url:
            self.loads.append((tag, url, found.get("integrity")))
        elif tag in self.inline:
            self._open = tag
        if found.get("id") == "graphiql":
            self.graphql_path = found.get("data-graphql-path")

    def handle_endtag(self, tag: str) -> None:
        self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self.inline[self._open].append(data)


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


async def test_graphiql_page_loads_only_same_origin_assets(client: httpx.AsyncClient) -> None:
    """Every script and stylesheet comes from /graphiql-assets/; no CDN, no https:// at all."""
    response = await client.get("/graphql")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    parts = PageParts(response.text)
    urls = [url for tag, url, _ in parts.loads if tag in ("script", "link")]
    assert len(urls) == 8  # 5 scripts, 2 stylesheets, the inline favicon
    assert all(url.startswith(("/graphiql-assets/", "data:image/svg+xml,")) for url in urls)
    for outside in ("https://", "unpkg", "jsdelivr", "cdn"):
        assert outside not in response.text


async def test_graphiql_assets_are_served_with_their_types_and_hashes(
    client: httpx.AsyncClient,
) -> None:
    """Each asset answers 200 with a JS or CSS type, nosniff, and the bytes its SRI names."""
    parts = PageParts((await client.get("/graphql")).text)
    loaded = [(tag, url, sri) for tag, url, sri in parts.loads if url.startswith("/graphiql")]
    assert {tag for tag, _, _ in loaded} == {"script", "link"}
    for tag, url, integrity in loaded:
        response = await client.get(url)
        assert response.status_code == 200, url
        expected_type = "text/javascript" if tag == "script" else "text/css"
        assert response.headers["content-type"] == f"{expected_type}; charset=utf-8"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "immutable" in response.headers["cache-control"]
        digest = base64.b64encode(hashlib.sha384(response.content).digest()).decode()
        assert integrity == f"sha384-{digest}"


async def test_graphiql_page_sends_security_headers(client: httpx.AsyncClient) -> None:
    """A strict CSP whose hashes are exactly the page's inline script and style."""
    response = await client.get("/graphql")
    parts = PageParts(response.text)
    (script,) = parts.inline["script"]
    (style,) = parts.inline["style"]
    policy = dict(
        [*directive.split(" ", 1), ""][:2]
        for directive in response.headers["content-security-policy"].split("; ")
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == f"'self' {csp_hash(script)}"
    assert policy["style-src"] == f"'self' {csp_hash(style)}"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"


def test_graphiql_page_queries_the_path_it_is_given(assets: Path) -> None:
    """The fetcher's endpoint is the path given, escaped into an attribute."""
    parts = PageParts(bytes(render_graphiql_page("/api/graphql", directory=assets).body).decode())
    assert parts.graphql_path == "/api/graphql"
    hostile = '/g"><script>alert(1)</script>'
    page = bytes(render_graphiql_page(hostile, directory=assets).body).decode()
    assert "<script>alert(1)" not in page
    assert PageParts(page).graphql_path == hostile


async def test_graphiql_page_without_assets_says_how_to_install_them(tmp_path: Path) -> None:
    """No assets: HTTP 503 naming the script and the make target, loading nothing."""
    async with app_client(tmp_path) as client:
        response = await client.get("/graphql")
    assert response.status_code == 503
    assert MISSING_MESSAGE in response.text
    assert "run scripts/fetch-graphiql-assets (make graphiql-assets)" in response.text
    assert "<script" not in response.text
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["x-frame-options"] == "DENY"
    assert graphiql_assets_available(tmp_path) is False


def test_graphiql_assets_dir_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GATEWAY_GRAPHIQL_ASSETS_DIR moves the folder; unset, it is the packaged one."""
    assert graphiql_assets_dir({}) == PACKAGED_ASSETS_DIR
    assert graphiql_assets_dir({ASSETS_DIR_VARIABLE: str(tmp_path)}) == tmp_path
    monkeypatch.setenv(ASSETS_DIR_VARIABLE, str(tmp_path))
    assert render_graphiql_page().status_code == 503


def test_graphiql_manifest_without_its_files_is_not_available(assets: Path, tmp_path: Path) -> None:
    """A manifest whose files are gone does not count as installed."""
    shutil.copy(assets / MANIFEST, tmp_path / MANIFEST)
    assert graphiql_assets_available(tmp_path) is False


@pytest.mark.parametrize(
    ("field", "value"),
    [("path", "../../etc/passwd"), ("path", 'x/"><script>'), ("integrity", "md5-abc")],
)
def test_graphiql_manifest_with_odd_values_is_refused(
    assets: Path, tmp_path: Path, field: str, value: str
) -> None:
    """Manifest values reach HTML and URLs: anything but plain paths and SRI is refused."""
    shutil.copytree(assets, tmp_path, dirs_exist_ok=True)
    manifest = json.loads((tmp_path / MANIFEST).read_text(encoding="utf-8"))
    manifest["assets"]["react"][field] = value
    (tmp_path / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    assert graphiql_assets_available(tmp_path) is False


@pytest.mark.parametrize(
    "path",
    ["/graphiql-assets/react@18.2.0/nothing.js", "/graphiql-assets/%2e%2e/graphiql.py"],
)
async def test_graphiql_assets_answer_404_for_unknown_files(tmp_path: Path, path: str) -> None:
    """Unknown files, paths out of the folder, and a missing folder are 404, not 500."""
    missing = tmp_path / "not-installed"
    for folder in (PACKAGED_ASSETS_DIR, missing):
        async with app_client(folder) as client:
            assert (await client.get(path)).status_code == 404
