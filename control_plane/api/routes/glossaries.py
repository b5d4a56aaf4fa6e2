"""/api/v1/glossaries: the caller's stored glossaries (create, list, read, replace,
delete). Jobs name one with ``glossary_id``. Another user's glossary is a 404, like one
that does not exist. The data logic is control_plane.jobs.glossaries."""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from control_plane.jobs import glossaries
from control_plane.jobs.admission import validation_details

from ..errors import ApiError
from ..openapi import AUTH_ERRORS, SECURED, err, json_spec, operation, ref
from ..protocol import GlossaryBody, GlossaryList, GlossarySummary, GlossaryView
from ..state import authenticate, runtime_of
from .jobs import _int_param, _json
from .translate import read_json

routes = web.RouteTableDef()

# 1,000 terms of 200 + 200 characters is 400,000 characters: 1 MiB holds them as UTF-8
# (up to 3 bytes for most scripts) with room for JSON escapes
MAX_BODY_BYTES = 1024 * 1024
GLOSSARY_ID = {
    "name": "glossary_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 64},
}
BODY = {
    "required": True,
    "content": {"application/json": {"schema": ref("GlossaryBody")}},
}
BODY_ERRORS = {
    "400": err("malformed_json or json_too_complex"),
    "413": err(f"Body over {MAX_BODY_BYTES} bytes"),
    "415": err("Form or multipart body; send application/json"),
    "422": err("Invalid name or terms (each violation named in details)"),
}


def summary(g: glossaries.GlossaryRecord) -> GlossarySummary:
    return GlossarySummary(
        id=g.id,
        name=g.name,
        term_count=g.term_count,
        content_hash=g.content_hash,
        created_at=g.created_at,
        updated_at=g.updated_at,
    )


async def _body(request: web.Request) -> GlossaryBody:
    raw = await read_json(request, MAX_BODY_BYTES)
    if not isinstance(raw, dict):
        raise ApiError(422, "invalid_request", "request body must be a JSON object")
    try:
        return GlossaryBody.model_validate(raw)
    except ValidationError as exc:
        raise ApiError(
            422, "invalid_request", "request fields are invalid", validation_details(exc)
        ) from exc


@routes.post("/api/v1/glossaries")
@operation(
    {
        "summary": "Store a glossary (source term -> target term)",
        "operationId": "createGlossary",
        "security": SECURED,
        "requestBody": BODY,
        "responses": {
            "201": json_spec(ref("GlossarySummary"), "Stored; use its id as glossary_id"),
            **AUTH_ERRORS,
            **BODY_ERRORS,
            "409": err("glossary_name_taken, or too_many_glossaries (at most 100 per user)"),
        },
    }
)
async def create_glossary(request: web.Request) -> web.Response:
    svc = runtime_of(request)
    who = await authenticate(request)
    body = await _body(request)
    missing = [f for f in ("name", "terms") if getattr(body, f) is None]
    if missing:
        raise ApiError(
            422,
            "invalid_request",
            f"{' and '.join(missing)} required",
            details=[{"field": f, "message": "required", "type": "missing"} for f in missing],
        )
    g = await svc.db.run(glossaries.create, svc.db.engine, who.user_id, body.name, body.terms)
    resp = _json(summary(g), status=201)
    resp.headers["Location"] = f"/api/v1/glossaries/{g.id}"
    return resp


@routes.get("/api/v1/glossaries")
@operation(
    {
        "summary": "List the caller's glossaries, newest first (without their terms)",
        "operationId": "listGlossaries",
        "security": SECURED,
        "parameters": [
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 100},
            },
            {
                "name": "offset",
                "in": "query",
                "schema": {"type": "integer", "minimum": 0, "maximum": 10_000, "default": 0},
            },
        ],
        "responses": {
            "200": json_spec(ref("GlossaryList"), "A page of glossaries"),
            **AUTH_ERRORS,
            "422": err("Bad paging parameters"),
        },
    }
)
async def list_glossaries(request: web.Request) -> web.Response:
    svc = runtime_of(request)
    who = await authenticate(request)
    limit = _int_param(request, "limit", 100, 1, 100)
    offset = _int_param(request, "offset", 0, 0, 10_000)
    items, total = await svc.db.run(glossaries.list_for, svc.db.engine, who.user_id, limit, offset)
    return _json(
        GlossaryList(
            glossaries=[summary(g) for g in items],
            total=total,
            limit=limit,
            offset=offset,
            next_offset=offset + limit if offset + limit < total else None,
        )
    )


@routes.get("/api/v1/glossaries/{glossary_id}")
@operation(
    {
        "summary": "A glossary with its terms",
        "operationId": "getGlossary",
        "security": SECURED,
        "parameters": [GLOSSARY_ID],
        "responses": {
            "200": json_spec(ref("GlossaryView"), "The glossary"),
            **AUTH_ERRORS,
            "404": err("No such glossary for this caller"),
        },
    }
)
async def get_glossary(request: web.Request) -> web.Response:
    svc = runtime_of(request)
    who = await authenticate(request)
    g = await svc.db.run(
        glossaries.get, svc.db.engine, who.user_id, request.match_info["glossary_id"]
    )
    return _json(GlossaryView(**summary(g).model_dump(), terms=g.terms or {}))


@routes.put("/api/v1/glossaries/{glossary_id}")
@operation(
    {
        "summary": "Replace a glossary's name and/or terms (jobs already submitted keep "
        "the terms they were submitted with)",
        "operationId": "replaceGlossary",
        "security": SECURED,
        "parameters": [GLOSSARY_ID],
        "requestBody": BODY,
        "responses": {
            "200": json_spec(ref("GlossarySummary"), "Replaced"),
            **AUTH_ERRORS,
            **BODY_ERRORS,
            "404": err("No such glossary for this caller"),
            "409": err("glossary_name_taken"),
        },
    }
)
async def replace_glossary(request: web.Request) -> web.Response:
    svc = runtime_of(request)
    who = await authenticate(request)
    body = await _body(request)
    g = await svc.db.run(
        glossaries.replace,
        svc.db.engine,
        who.user_id,
        request.match_info["glossary_id"],
        body.name,
        body.terms,
    )
    return _json(summary(g))


@routes.delete("/api/v1/glossaries/{glossary_id}")
@operation(
    {
        "summary": "Delete a glossary (jobs already submitted keep its terms)",
        "operationId": "deleteGlossary",
        "security": SECURED,
        "parameters": [GLOSSARY_ID],
        "responses": {
            "204": {"description": "Deleted"},
            **AUTH_ERRORS,
            "404": err("No such glossary for this caller"),
        },
    }
)
async def delete_glossary(request: web.Request) -> web.Response:
    svc = runtime_of(request)
    who = await authenticate(request)
    await svc.db.run(
        glossaries.delete, svc.db.engine, who.user_id, request.match_info["glossary_id"]
    )
    return web.Response(status=204)
