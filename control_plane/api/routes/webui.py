"""The translation web page at ``/`` and its two assets, served from ``control_plane/api/web``.

The page only calls the public API (``/api/v1/...``) with the key the user types in; it
needs no build step and no external resource. Every response carries a strict
Content-Security-Policy (``script-src 'self'``, no inline script or style, ``connect-src
'self'``). The routes are in the OpenAPI document only because every route must be (see
``openapi.operation``), tagged ``web-ui`` and marked ``x-web-ui`` as not part of the API.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from aiohttp import web

from ..openapi import Handler, operation

routes = web.RouteTableDef()

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

# path -> (file in web/, content type)
ASSETS = {
    "/": ("index.html", "text/html"),
    "/web/app.js": ("app.js", "text/javascript"),
    "/web/style.css": ("style.css", "text/css"),
}


@cache
def _body(name: str) -> bytes:
    return (WEB_DIR / name).read_bytes()


def _handler(path: str, name: str, content_type: str) -> Handler:
    async def serve(request: web.Request) -> web.Response:
        return web.Response(
            body=_body(name),
            headers={"Content-Type": f"{content_type}; charset=utf-8", **SECURITY_HEADERS},
        )

    serve.__name__ = f"webui_{name.replace('.', '_')}"
    what = "the translation page" if path == "/" else name
    spec = {
        "summary": f"Web UI, not part of the API: {what}",
        "operationId": f"webUi_{name.replace('.', '_')}",
        "tags": ["web-ui"],
        "x-web-ui": True,
        "responses": {
            "200": {
                "description": f"{name} (static; served with a strict Content-Security-Policy)",
                "content": {content_type: {"schema": {"type": "string"}}},
            }
        },
    }
    return operation(spec)(serve)


for _path, (_name, _type) in ASSETS.items():
    routes.get(_path)(_handler(_path, _name, _type))
