"""The web page at / and its assets: content types, the Content-Security-Policy, nothing
external, only the public API called, and the routes marked as not part of the API."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from control_plane.api import create_app
from control_plane.api.routes.webui import ASSETS, WEB_DIR
from control_plane.inference import LocalInferenceClient
from control_plane.jobs.documents import OWN_EXTENSIONS
from control_plane.settings import Settings
from control_plane.text import formats
from tests.unit.api.fake_engine import FakeEngine


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=tmp_path, model_dir=tmp_path / "models", log_format="text")


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings, client=LocalInferenceClient(FakeEngine())))


class _Refs(HTMLParser):
    """Every tag with its attributes, and the text of inline <script>/<style> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        self.tags.append((tag, dict(attrs)))
        self._in = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag):  # noqa: ANN001
        self._in = None

    def handle_data(self, data):  # noqa: ANN001
        if self._in and data.strip():
            self.inline.append(f"<{self._in}>{data.strip()[:80]}")


def _csp(headers) -> dict[str, str]:  # noqa: ANN001
    out = {}
    for part in headers["Content-Security-Policy"].split(";"):
        name, _, value = part.strip().partition(" ")
        out[name] = value
    return out


async def test_index_is_html_with_a_strict_csp(client):
    r = await client.get("/")
    assert r.status == 200
    assert r.content_type == "text/html"
    assert r.charset == "utf-8"
    csp = _csp(r.headers)
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'"
    assert csp["style-src"] == "'self'"
    assert csp["connect-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"
    assert "unsafe" not in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    html = await r.text()
    assert "<form" in html and 'id="api-key"' in html and 'type="file"' in html
    head = await client.head("/")
    assert head.status == 200 and head.content_type == "text/html"


async def test_no_inline_script_style_or_handlers():
    """The CSP forbids them, so they would silently not run: none may be written."""
    page = _Refs()
    page.feed((WEB_DIR / "index.html").read_text())
    assert page.inline == []
    for tag, attrs in page.tags:
        assert "style" not in attrs, tag
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        if tag == "script":
            assert attrs.get("src"), "a script without src is inline"
    js = (WEB_DIR / "app.js").read_text()
    assert "eval(" not in js and "new Function" not in js and "innerHTML" not in js


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/web/app.js", "text/javascript"), ("/web/style.css", "text/css")],
)
async def test_assets_are_served_with_their_types(client, path, content_type):
    r = await client.get(path)
    assert r.status == 200
    assert r.content_type == content_type
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in r.headers
    assert len(await r.read()) > 100


async def test_every_asset_the_page_references_is_served(client):
    page = _Refs()
    page.feed((WEB_DIR / "index.html").read_text())
    local = set()
    for tag, attrs in page.tags:
        ref = attrs.get("src") or (attrs.get("href") if tag == "link" else None)
        if ref and not ref.startswith("data:"):
            local.add(ref)
    assert local == {"/web/app.js", "/web/style.css"}
    for ref in local:
        assert (await client.get(ref)).status == 200, ref


def test_no_asset_references_an_external_url():
    for name in {n for n, _ in ASSETS.values()}:
        text = (WEB_DIR / name).read_text()
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), name
        assert not re.search(r"@import|url\(\s*['\"]?(?!data:)", text), name
    # the script only fetches the public API
    js = (WEB_DIR / "app.js").read_text()
    called = re.findall(r"api\(\s*[`\"']([^`\"']+)", js)
    assert called and all(path.startswith("/api/v1/") for path in called), called
    assert js.count("fetch(") == 1  # the one place, api(), which adds the user's key


def test_the_file_input_accepts_every_known_format():
    page = _Refs()
    page.feed((WEB_DIR / "index.html").read_text())
    accept = next(a["accept"] for t, a in page.tags if t == "input" and a.get("id") == "file")
    offered = set(accept.split(","))
    known = set(OWN_EXTENSIONS)
    for name in formats.names():
        known.update(formats.get(name).extensions)
    assert known <= offered, known - offered


async def test_the_routes_are_marked_as_not_part_of_the_api(client):
    doc = await (await client.get("/openapi.json")).json()
    for path in ASSETS:
        op = doc["paths"][path]["get"]
        assert op["x-web-ui"] is True and op["tags"] == ["web-ui"], path
        assert op["summary"].startswith("Web UI, not part of the API"), path
        assert "security" not in op
    api_ops = [op for p, ops in doc["paths"].items() if p not in ASSETS for op in ops.values()]
    assert api_ops and not [op for op in api_ops if op.get("x-web-ui")]


async def test_unknown_asset_is_a_json_404(client):
    r = await client.get("/web/nope.js")
    assert r.status == 404
    assert (await r.json())["error"]["code"] == "not_found"
