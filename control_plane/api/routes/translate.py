"""POST /api/v1/translate."""

from __future__ import annotations

import asyncio

from aiohttp import web

from control_plane.jobs.admission import admit, off_loop
from control_plane.jobs.json_body import THREAD_BYTES, check_media_type, parse_json
from control_plane.security import QuotaExceeded, vet_callback_url

from ..errors import ApiError
from ..openapi import AUTH_ERRORS, SECURED, err, json_spec, operation, ref
from ..protocol import SubmitResponse, job_links, metadata_view
from ..state import authenticate, runtime_of

routes = web.RouteTableDef()


async def read_json(request: web.Request, limit: int) -> object:
    """The body as a JSON value (control_plane.jobs.json_body): 413 over ``limit`` bytes,
    415 for form data, 400 with the reason for anything else that is not a bounded JSON
    document. Bodies over 64 KiB are parsed in a thread, off the event loop."""
    check_media_type(request.headers.get("Content-Type"))  # BodyError: 415
    too_large = ApiError(413, "content_too_large", f"request body over the {limit}-byte limit")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        # a chunked body (no Content-Length) over aiohttp's client_max_size, which is the
        # limit plus some slack: its message would name that number, not the limit
        raise too_large from exc
    if len(raw) > limit:
        raise too_large
    if len(raw) > THREAD_BYTES:
        return await asyncio.to_thread(parse_json, raw)
    return parse_json(raw)


async def vet_submission(svc, who, req) -> None:  # noqa: ANN001
    """The trust-boundary checks of a submission (control_plane.security): a callback URL
    that must not be called is 422; over the user's word quota is 429 with Retry-After."""
    if req.callback_url:
        await vet_callback_url(req.callback_url, svc.settings)  # UnsafeCallback: 422
    words = req.word_count  # counted by admission
    try:
        await svc.db.run(svc.quota.check, svc.db.engine, who.user_id, who.tier, words)
    except QuotaExceeded:  # 429 with Retry-After (413 when one request exceeds the quota)
        svc.metrics.errors.labels("quota").inc()
        raise


@routes.post("/api/v1/translate")
@operation(
    {
        "summary": "Submit a document for translation",
        "operationId": "submitTranslation",
        "security": SECURED,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ref("TranslateRequest")}},
        },
        "responses": {
            "202": json_spec(ref("SubmitResponse"), "Job accepted"),
            "400": err(
                "malformed_json (not valid or not bounded JSON: huge numbers, NaN, "
                "duplicate keys, lone surrogates), json_too_complex (nesting or "
                "token limits), malformed_body (a Content-Encoding that does not decode), "
                "or unsupported_language_pair"
            ),
            "404": err("glossary_not_found: glossary_id is not one of the caller's glossaries"),
            **AUTH_ERRORS,
            "413": err("Body or word count over the configured limit"),
            "415": err("Form or multipart body; send application/json"),
            "422": err(
                "invalid_request: invalid fields (priority, languages, content, "
                "callback_url, metadata, format, do_not_translate, glossary, glossary_id); "
                "invalid_markup: content is not readable as the format given"
            ),
            "503": err("Engine still loading"),
        },
    }
)
async def submit(request: web.Request) -> web.Response:
    svc = runtime_of(request)
    who = await authenticate(request)
    body = await read_json(request, svc.settings.max_body_bytes)
    # Rejected: mapped by its code. Admission runs in a thread unless the body is a short
    # plain text (admission.off_loop): an 8 MiB content costs tens of milliseconds of
    # pydantic and word counting, and counting a document's words parses it, which a
    # small body can make cost seconds
    if (request.content_length or 0) > THREAD_BYTES or off_loop(body):
        req = await asyncio.to_thread(admit, body, who, svc.client, svc.settings)
    else:
        req = admit(body, who, svc.client, svc.settings)
    return await accept(svc, who, req)


async def accept(svc, who, req) -> web.Response:  # noqa: ANN001
    """An admitted submission (JSON or an uploaded document): trust checks, the job, 202."""
    await vet_submission(svc, who, req)
    job = await svc.jobs.submit(req, svc.client.model_version(req.source_lang, req.target_lang))
    svc.metrics.jobs_submitted.labels(job.priority).inc()
    resp = SubmitResponse(
        job_id=job.id,
        status=job.status,
        estimated_completion=job.estimated_completion,
        priority=job.priority,
        word_count=job.word_count,
        estimated_cost=job.estimated_cost,
        source_language=job.source_lang,
        target_language=job.target_lang,
        chunk_count=job.chunk_count,
        metadata=metadata_view(job.job_metadata, job.id),
        format=job.format,
        glossary_id=job.glossary_id,
        detected_language=job.detected_language,
        detection_confidence=job.detection_confidence,
        links=job_links(job.id),
    )
    return web.Response(
        status=202,
        text=resp.model_dump_json(),
        content_type="application/json",
        headers={"Location": f"/api/v1/jobs/{job.id}"},
    )
