"""The self-hosted GraphiQL page (``gateway/graphiql.py``) on a small Starlette app.

The assets are committed in ``gateway/static/graphiql/``; ``scripts/fetch-graphiql-assets``
fetched them and pins their hashes, which a test here checks again.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.machinery
import importlib.util
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

from gateway.errors import ConfigError
from gateway.graphiql import (
    MANIFEST,
    MISSING_MESSAGE,
    PACKAGED_ASSETS_DIR,
    graphiql_assets_available,
    graphiql_routes,
    render_graphiql_page,
)
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
FETCH_SCRIPT = ROOT / "scripts" / "fetch-graphiql-assets"
BASE_ENVIRON = {
    "PBX_URL": "https://pbx.test:8088",
    "PBX_USERNAME": "u",
    "PBX_PASSWORD": "p",
    "GATEWAY_AUTH": "none",
}


@pytest.fixture(scope="session")
def assets() -> Path:
    """The packaged assets folder (committed with the source)."""
    assert graphiql_assets_available(PACKAGED_ASSETS_DIR)
    return PACKAGED_ASSETS_DIR


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


async def test_graphiql_page_without_assets_says_what_is_wrong(tmp_path: Path) -> None:
    """A folder without the assets: HTTP 503 naming the setting, loading nothing."""
    async with app_client(tmp_path) as client:
        response = await client.get("/graphql")
    assert response.status_code == 503
    assert MISSING_MESSAGE in response.text
    assert "GATEWAY_GRAPHIQL_ASSETS_DIR" in response.text
    assert "<script" not in response.text
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["x-frame-options"] == "DENY"
    assert graphiql_assets_available(tmp_path) is False


def test_graphiql_assets_dir_comes_from_settings(tmp_path: Path) -> None:
    """GATEWAY_GRAPHIQL_ASSETS_DIR is read once into Settings; unset, the packaged folder
    serves; a path that is not a folder is a one-line ConfigError naming the variable."""
    assert Settings.from_environ(BASE_ENVIRON).graphiql_assets_dir is None
    moved = Settings.from_environ({**BASE_ENVIRON, "GATEWAY_GRAPHIQL_ASSETS_DIR": str(tmp_path)})
    assert moved.graphiql_assets_dir == tmp_path
    assert render_graphiql_page(directory=moved.graphiql_assets_dir).status_code == 503
    assert render_graphiql_page().status_code == 200
    with pytest.raises(ConfigError, match=r"^GATEWAY_GRAPHIQL_ASSETS_DIR: .* is not a directory$"):
        Settings.from_environ({**BASE_ENVIRON, "GATEWAY_GRAPHIQL_ASSETS_DIR": str(FETCH_SCRIPT)})


def test_graphiql_page_reads_no_environment_at_request_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The page module never reads os.environ: a variable set after start changes nothing."""
    monkeypatch.setenv("GATEWAY_GRAPHIQL_ASSETS_DIR", str(tmp_path))
    assert render_graphiql_page().status_code == 200
    source = (ROOT / "gateway" / "graphiql.py").read_text(encoding="utf-8")
    assert "environ" not in source


def test_graphiql_committed_assets_match_their_pinned_hashes() -> None:
    """Every committed file is byte for byte what the fetch script pinned (SHA-384), and
    each package's licence travels with it (a file, or the manifest's licence field)."""
    loader = importlib.machinery.SourceFileLoader("fetch_graphiql_assets", str(FETCH_SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    script = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = script  # its dataclasses look their module up
    try:
        loader.exec_module(script)
    finally:
        del sys.modules[loader.name]
    assert script.up_to_date(PACKAGED_ASSETS_DIR) is True
    manifest = json.loads((PACKAGED_ASSETS_DIR / MANIFEST).read_text(encoding="utf-8"))
    for package, notice in manifest["packages"].items():
        assert notice["license"] == "MIT", package
        if notice["license_file"] is not None:
            assert (PACKAGED_ASSETS_DIR / notice["license_file"]).is_file()
    tracked = subprocess.run(  # noqa: S603 - git, fixed arguments
        ["git", "ls-files", "--error-unmatch", str(PACKAGED_ASSETS_DIR / MANIFEST)],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    assert tracked.returncode == 0, "gateway/static/graphiql/ must be committed"


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


async def test_graphiql_page_runs_subscriptions_over_a_same_origin_websocket(
    client: httpx.AsyncClient, assets: Path
) -> None:
    """Subscriptions need no other file: the page gives GraphiQL's fetcher a ws(s):// URL of
    the GraphQL path, whose WebSocket client (graphql-ws, graphql-transport-ws) is inside
    GraphiQL's committed bundle; the CSP lets the page reach its own origin only
    (``connect-src 'self'``, which covers ws:// and wss:// to it) and nothing else.
    tests/test_browser.py runs one in Chromium."""
    response = await client.get("/graphql")
    (script,) = PageParts(response.text).inline["script"]
    assert "subscriptionUrl" in script
    assert 'parsedURL.protocol === "http:" ? "ws:" : "wss:"' in script
    assert "shouldPersistHeaders: false" in script  # a key typed in Headers stays in memory
    manifest = json.loads((assets / MANIFEST).read_text(encoding="utf-8"))
    bundle = (assets / manifest["assets"]["graphiql.js"]["path"]).read_text(encoding="utf-8")
    assert "GRAPHQL_TRANSPORT_WS_PROTOCOL = 'graphql-transport-ws'" in bundle
    assert "createWebsocketsFetcherFromUrl" in bundle
    policy = response.headers["content-security-policy"]
    assert "connect-src 'self';" in policy
    assert "ws:" not in policy and "wss:" not in policy  # no other host, no scheme wildcard
