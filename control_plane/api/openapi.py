"""The OpenAPI 3.1 document (/openapi.json) and a page to browse it (/docs).

Schemas come from the pydantic models in protocol.py, so the document cannot drift from
what the handlers validate and return.
"""

from __future__ import annotations

import json
from functools import cache

from aiohttp import web
from pydantic.json_schema import models_json_schema

from control_plane.domain import JOB_STATUSES

from . import protocol as p

routes = web.RouteTableDef()
REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(description: str) -> dict:
    return _json(_ref("ErrorResponse"), description)


AUTH_ERRORS = {
    "401": _err("Missing or invalid API key / JWT"),
    "403": _err("Account disabled, or priority above the caller's tier"),
    "429": {
        **_err("Rate limit exceeded"),
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}
JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 64},
}


@cache
def document() -> dict:
    models = [
        p.TranslateRequest, p.SubmitResponse, p.JobView, p.JobResult, p.JobList,
        p.Languages, p.ErrorResponse,
    ]  # fmt: skip
    _, defs = models_json_schema(
        [(m, "validation" if m is p.TranslateRequest else "serialization") for m in models],
        ref_template=REF,
    )
    schemas = defs.get("$defs", {})
    secured = [{"bearer": []}]
    paths = {
        "/api/v1/translate": {
            "post": {
                "summary": "Submit a document for translation",
                "operationId": "submitTranslation",
                "security": secured,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("TranslateRequest")}},
                },
                "responses": {
                    "202": _json(_ref("SubmitResponse"), "Job accepted"),
                    "400": _err(
                        "malformed_json (not valid or not bounded JSON: huge numbers, NaN, "
                        "duplicate keys, lone surrogates), json_too_complex (nesting or "
                        "token limits), or unsupported_language_pair"
                    ),
                    **AUTH_ERRORS,
                    "413": _err("Body or word count over the configured limit"),
                    "415": _err("Form or multipart body; send application/json"),
                    "422": _err(
                        "Invalid fields (priority, languages, content, callback_url, metadata)"
                    ),
                    "503": _err("Engine still loading"),
                },
            }
        },
        "/api/v1/jobs": {
            "get": {
                "summary": "List the caller's jobs, newest first",
                "operationId": "listJobs",
                "security": secured,
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                    },
                    {
                        "name": "offset",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 0,
                            "maximum": 10_000_000,
                            "default": 0,
                        },
                    },
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": list(JOB_STATUSES),
                        },
                    },
                ],  # fmt: skip
                "responses": {
                    "200": _json(_ref("JobList"), "A page of jobs"),
                    **AUTH_ERRORS,
                    "422": _err("Bad paging parameters"),
                },
            }
        },
        "/api/v1/jobs/{job_id}": {
            "get": {
                "summary": "Status and progress of a job",
                "operationId": "getJob",
                "security": secured,
                "parameters": [JOB_ID],
                "responses": {
                    "200": _json(_ref("JobView"), "The job"),
                    **AUTH_ERRORS,
                    "404": _err("No such job for this caller"),
                },
            },
            "delete": {
                "summary": "Cancel a job (stops its engine work)",
                "operationId": "cancelJob",
                "security": secured,
                "parameters": [JOB_ID],
                "responses": {
                    "200": _json(_ref("JobView"), "The cancelled job"),
                    **AUTH_ERRORS,
                    "404": _err("No such job for this caller"),
                    "409": _err("The job already finished"),
                },
            },
        },
        "/api/v1/jobs/{job_id}/result": {
            "get": {
                "summary": "The translation of a completed job",
                "operationId": "getJobResult",
                "security": secured,
                "parameters": [JOB_ID],
                "responses": {
                    "200": _json(_ref("JobResult"), "The translated document"),
                    **AUTH_ERRORS,
                    "404": _err("No such job for this caller"),
                    "409": _err("Not completed (queued, processing, failed or cancelled)"),
                },
            }
        },
        "/api/v1/languages": {
            "get": {
                "summary": "Language pairs served",
                "operationId": "listLanguages",
                "responses": {"200": _json(_ref("Languages"), "Pairs and model versions")},
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "operationId": "healthz",
                "responses": {"200": {"description": "The process is up"}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness (database and engine)",
                "operationId": "readyz",
                "responses": {
                    "200": {"description": "Ready"},
                    "503": {"description": "Not ready (engine loading or database down)"},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "responses": {
                    "200": {
                        "description": "Text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                },  # fmt: skip
            }
        },
    }
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
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "API key or JWT"}
            },
        },
    }


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document())


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
    html = DOCS_HTML.replace("__DOC__", json.dumps(document()).replace("</", "<\\/"))
    return web.Response(text=html, content_type="text/html")
