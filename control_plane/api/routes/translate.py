"""POST /api/v1/translate."""

from __future__ import annotations

import json

from aiohttp import web
from pydantic import ValidationError

from control_plane.auth import TIER_MAX_PRIORITY
from control_plane.jobs.chunking import count_words
from control_plane.jobs.service import SubmitRequest

from ..errors import ApiError
from ..protocol import SubmitResponse, TranslateRequest
from ..state import authenticate, services

routes = web.RouteTableDef()


def validation_details(exc: ValidationError) -> list[dict]:
    return [
        {
            "field": ".".join(str(p) for p in err["loc"]) or "body",
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


async def read_json(request: web.Request, limit: int) -> object:
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "content_too_large", f"request body over the {limit}-byte limit")
    raw = await request.read()
    if len(raw) > limit:
        raise ApiError(413, "content_too_large", f"request body over the {limit}-byte limit")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", f"request body is not valid JSON: {exc}") from exc


@routes.post("/api/v1/translate")
async def submit(request: web.Request) -> web.Response:
    svc = services(request)
    who = await authenticate(request)
    body = await read_json(request, svc.settings.max_body_bytes)
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_request", "request body must be a JSON object")
    try:
        req = TranslateRequest.model_validate(body)
    except ValidationError as exc:
        raise ApiError(
            422, "invalid_request", "request fields are invalid", validation_details(exc)
        ) from exc
    if not who.allows(req.priority):
        raise ApiError(
            403,
            "priority_not_allowed",
            f"tier {who.tier} may use priority up to {TIER_MAX_PRIORITY[who.tier]}, "
            f"not {req.priority}",
        )
    if not svc.client.ready():
        raise ApiError(
            503, "not_ready", "the translation engine is still loading; retry shortly",
            headers={"Retry-After": "5"},
        )  # fmt: skip
    pairs = svc.client.pairs()
    if (req.source_lang, req.target_lang) not in set(pairs):
        listed = ", ".join(f"{s}-{t}" for s, t in pairs)
        raise ApiError(
            400,
            "unsupported_language_pair",
            f"no model translates {req.source_lang}->{req.target_lang}; supported: {listed}",
            details={"supported_pairs": [{"source": s, "target": t} for s, t in pairs]},
        )
    words = count_words(req.text)
    if words > svc.settings.max_words:
        raise ApiError(
            413,
            "content_too_large",
            f"text has {words} words; the limit is {svc.settings.max_words} per request",
        )
    job = await svc.jobs.submit(
        SubmitRequest(
            user_id=who.user_id,
            text=req.text,
            source_lang=req.source_lang,
            target_lang=req.target_lang,
            priority=req.priority,
            callback_url=str(req.callback_url) if req.callback_url else None,
        ),
        svc.client.model_version(req.source_lang, req.target_lang),
    )
    svc.metrics.jobs_submitted.labels(job.priority).inc()
    resp = SubmitResponse(
        job_id=job.id,
        status=job.status,
        priority=job.priority,
        source_lang=job.source_lang,
        target_lang=job.target_lang,
        word_count=job.word_count,
        chunk_count=job.chunk_count,
        estimated_completion=job.estimated_completion,
        estimated_cost=job.estimated_cost,
        links={
            "self": f"/api/v1/jobs/{job.id}",
            "result": f"/api/v1/jobs/{job.id}/result",
        },
    )
    return web.Response(
        status=202,
        text=resp.model_dump_json(),
        content_type="application/json",
        headers={"Location": f"/api/v1/jobs/{job.id}"},
    )
