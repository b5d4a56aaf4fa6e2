"""The OpenAPI 3.1 document (/openapi.json) and a page to browse it (/docs).

Schemas come from the pydantic models in protocol.py and each path's operation is written
beside its handler (``@operation``), so the document cannot drift from what the handlers
validate and return, and a route cannot exist without being documented.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import cache

from aiohttp import web
from pydantic.json_schema import models_json_schema

from . import protocol as p

routes = web.RouteTableDef()
REF = "#/components/schemas/{model}"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def json_spec(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def err(description: str) -> dict:
    return json_spec(ref("ErrorResponse"), description)


SECURED = [{"bearer": []}]
AUTH_ERRORS = {
    "401": err("Missing or invalid API key / JWT"),
    "403": err("Account disabled, or priority above the caller's tier"),
    "429": {
        **err("Rate limit exceeded"),
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}
JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 64},
}
MODELS = (
    p.TranslateRequest, p.SubmitResponse, p.JobView, p.JobResult, p.JobList, p.Languages,
    p.ErrorResponse, p.GlossaryBody, p.GlossarySummary, p.GlossaryView, p.GlossaryList,
)  # fmt: skip
REQUEST_MODELS = (p.TranslateRequest, p.GlossaryBody)  # their validation schema is shown


def operation(spec: dict) -> Callable[[Handler], Handler]:
    """The OpenAPI operation of a route handler, written beside it: the document is built
    from the app's routes, so a route cannot exist without being documented there."""

    def attach(handler: Handler) -> Handler:
        handler.__openapi__ = spec  # type: ignore[attr-defined]
        return handler

    return attach


@cache
def _schemas() -> dict:
    _, defs = models_json_schema(
        [(m, "validation" if m in REQUEST_MODELS else "serialization") for m in MODELS],
        ref_template=REF,
    )
    return defs.get("$defs", {})


def document(app: web.Application) -> dict:
    paths: dict[str, dict] = {}
    for route in app.router.routes():
        spec = getattr(route.handler, "__openapi__", None)
        if spec is None or route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        paths.setdefault(path, {})[route.method.lower()] = spec
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mt-backend",
            "version": "1",
            "description": "Machine translation jobs: submit, poll, fetch the result. "
            "Authenticate with `Authorization: Bearer <API key or JWT>`.",
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "API key or JWT"}
            },
        },
    }


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document(request.app))


DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>mt-backend API</title>
<style>body{font:15px system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
code,pre{background:#f4f4f4;padding:.1rem .3rem}pre{padding:.6rem;overflow:auto}
h2{margin-top:2rem;border-bottom:1px solid #ddd}.m{font-weight:bold;text-transform:uppercase}
</style></head><body><h1>mt-backend API</h1>
<p>Machine-readable document: <a href="/openapi.json">/openapi.json</a>
(load it into any OpenAPI viewer). Summary:</p><div id="ops"></div>
<script>const doc = __DOC__;
const out = document.getElementById("ops");
for (const [path, ops] of Object.entries(doc.paths)) {
  for (const [method, op] of Object.entries(ops)) {
    const h = document.createElement("h2");
    h.innerHTML = `<span class="m">${method}</span> <code>${path}</code>`;
    out.appendChild(h);
    const d = document.createElement("p");
    d.textContent = op.summary + " - responses: " + Object.keys(op.responses).join(", ");
    out.appendChild(d);
    const rb = op.requestBody && op.requestBody.content["application/json"].schema.$ref;
    if (rb) {
      const name = rb.split("/").pop(), pre = document.createElement("pre");
      pre.textContent = name + " " + JSON.stringify(doc.components.schemas[name], null, 2);
      out.appendChild(pre);
    }
  }
}</script></body></html>"""


@routes.get("/docs")
async def docs(request: web.Request) -> web.Response:
    html = DOCS_HTML.replace("__DOC__", json.dumps(document(request.app)).replace("</", "<\\/"))
    return web.Response(text=html, content_type="text/html")
