"""Job status, result, listing and cancel; a user only ever sees their own jobs."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from aiohttp import web

from control_plane.db import Job
from control_plane.domain import JOB_STATUSES
from control_plane.jobs.documents import decode, is_document
from control_plane.jobs.service import elapsed_speed
from control_plane.text import formats

from ..errors import ApiError
from ..openapi import AUTH_ERRORS, JOB_ID, SECURED, err, json_spec, operation, ref
from ..protocol import JobList, JobResult, JobView, job_links, metadata_view
from ..state import authenticate, runtime_of

routes = web.RouteTableDef()
# what the result endpoint answers with for a document job: each format's file type
THREAD_CHARS = 256 * 1024  # results with more characters are serialized off the event loop
DOCUMENT_MEDIA_TYPES = sorted(
    {formats.get(name).media_type.split(";")[0] for name in formats.names() if is_document(name)}
)


def job_view(job: Job) -> JobView:
    """The design's status shape. Never reads the job's texts (they are not loaded)."""
    progress = job.words_processed / job.word_count if job.word_count else 1.0
    if job.status == "completed":
        progress = 1.0
    return JobView(
        job_id=job.id,
        status=job.status,
        progress=round(min(progress, 1.0), 4),
        created_at=job.created_at,
        started_at=job.started_at,
        estimated_completion=job.estimated_completion,
        word_count=job.word_count,
        words_processed=job.words_processed,
        current_speed=elapsed_speed(job),
        priority=job.priority,
        source_language=job.source_lang,
        target_language=job.target_lang,
        chunks_total=job.chunk_count,
        chunks_done=job.chunks_done,
        estimated_cost=job.estimated_cost,
        cost_usd=job.cost_usd,
        completed_at=job.completed_at,
        processing_time_ms=job.processing_time_ms,
        retry_count=job.retry_count,
        error=job.error,
        metadata=metadata_view(job.job_metadata, job.id),
        format=job.format,
        glossary_id=job.glossary_id,
        detected_language=job.detected_language,
        detection_confidence=job.detection_confidence,
        links=job_links(job.id),
    )


def _json(model, status: int = 200, body: bytes | None = None) -> web.Response:  # noqa: ANN001
    # bytes straight from pydantic-core: model_dump_json() makes a str that aiohttp then
    # encodes, 3x the event loop's time for an 8 MiB job's result (~75 ms against ~22)
    return web.Response(
        status=status,
        body=type(model).__pydantic_serializer__.to_json(model) if body is None else body,
        content_type="application/json",
        charset="utf-8",
    )


async def _load(request: web.Request, texts: bool = False) -> Job:
    svc = runtime_of(request)
    who = await authenticate(request)
    return await svc.jobs.get(who.user_id, request.match_info["job_id"], texts=texts)


@routes.get("/api/v1/jobs/{job_id}")
@operation(
    {
        "summary": "Status and progress of a job",
        "operationId": "getJob",
        "security": SECURED,
        "parameters": [JOB_ID],
        "responses": {
            "200": json_spec(ref("JobView"), "The job"),
            **AUTH_ERRORS,
            "404": err("No such job for this caller"),
        },
    }
)
async def get_job(request: web.Request) -> web.Response:
    return _json(job_view(await _load(request)))


def _wants_json(request: web.Request, job) -> bool:  # noqa: ANN001 - a Job
    """The JSON form of a document job's result: ``?as=json``, or an Accept header that
    names application/json and not the file's type (a client written against the design's
    contract, where the result is JSON, gets JSON; ``*/*`` and browsers get the file)."""
    if request.query.get("as") == "json":
        return True
    accept = request.headers.get("Accept", "").lower()
    media = formats.get(job.format).media_type.split(";")[0].lower()
    return "application/json" in accept and media not in accept


@routes.get("/api/v1/jobs/{job_id}/result")
@operation(
    {
        "summary": "The translation of a completed job",
        "operationId": "getJobResult",
        "security": SECURED,
        "parameters": [JOB_ID],
        "responses": {
            "200": {
                "description": "The translated document: JSON for text, html and xml jobs; "
                "for a document format (po, xliff, markdown, srt, vtt, docx) the translated "
                "file itself, with its Content-Type and a Content-Disposition file name "
                "(add ?as=json, or send Accept: application/json, for the JSON form, whose "
                "translated_content is the file: base64 for docx)",
                "content": {
                    "application/json": {"schema": ref("JobResult")},
                    **{
                        media: {"schema": {"type": "string", "format": "binary"}}
                        for media in DOCUMENT_MEDIA_TYPES
                    },
                },
            },
            **AUTH_ERRORS,
            "404": err("No such job for this caller"),
            "409": err("Not completed (queued, processing, failed or cancelled)"),
        },
    }
)
async def get_result(request: web.Request) -> web.Response:
    job = await _load(request, texts=True)
    if job.status == "completed" and is_document(job.format) and not _wants_json(request, job):
        return await _file(request, job)
    if job.status != "completed":
        code = {"failed": "job_failed", "cancelled": "job_cancelled"}.get(job.status, "not_ready")
        message = {
            "failed": f"job failed: {job.error}",
            "cancelled": "job was cancelled; there is no result",
        }.get(job.status, f"job is {job.status}; poll /api/v1/jobs/{job.id} until completed")
        raise ApiError(409, code, message, details={"status": job.status})
    result = JobResult(
        job_id=job.id,
        status=job.status,
        source_content=job.source_text,
        translated_content=job.result_text or "",
        source_language=job.source_lang,
        target_language=job.target_lang,
        word_count=job.word_count,
        processing_time_ms=job.processing_time_ms,
        confidence_score=job.confidence_score,
        completed_at=job.completed_at,
        model_version=job.model_version,
        cost_usd=job.cost_usd,
        words_per_minute=job.words_per_minute,
        metadata=metadata_view(job.job_metadata, job.id),
        format=job.format,
        glossary_id=job.glossary_id,
        detected_language=job.detected_language,
        detection_confidence=job.detection_confidence,
    )
    if len(result.source_content) + len(result.translated_content) < THREAD_CHARS:
        return _json(result)
    # a large result is serialized in a thread: the event loop then waits at most for
    # the one C call that holds the GIL, not also for the threads it competes with
    body = await asyncio.to_thread(JobResult.__pydantic_serializer__.to_json, result)
    return _json(result, body=body)


async def _file(request: web.Request, job) -> web.Response:  # noqa: ANN001 - a Job
    """A document job's translated file, as a download."""
    svc = runtime_of(request)
    name = await svc.jobs.download_name(job)
    fmt = formats.get(job.format)
    return web.Response(
        body=decode(job.result_text or "", job.format),
        headers={
            "Content-Type": fmt.media_type,
            "Content-Disposition": content_disposition(name),
        },
    )


def content_disposition(name: str) -> str:
    """``attachment`` with an ASCII fallback name and the UTF-8 one (RFC 6266/5987)."""
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


@routes.delete("/api/v1/jobs/{job_id}")
@operation(
    {
        "summary": "Cancel a job (stops its engine work)",
        "operationId": "cancelJob",
        "security": SECURED,
        "parameters": [JOB_ID],
        "responses": {
            "200": json_spec(ref("JobView"), "The cancelled job"),
            **AUTH_ERRORS,
            "404": err("No such job for this caller"),
            "409": err("The job already finished"),
        },
    }
)
async def cancel_job(request: web.Request) -> web.Response:
    svc = runtime_of(request)
    who = await authenticate(request)
    # JobNotFound / JobConflict: 404 / 409 through the error middleware
    return _json(job_view(await svc.jobs.cancel(who.user_id, request.match_info["job_id"])))


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    # ASCII digits only: int() also takes "٥", "5_0", "+5" and " 5"
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 12 else None
    if value is None or not lo <= value <= hi:
        raise ApiError(
            422,
            "invalid_request",
            f"{name} must be an integer from {lo} to {hi}",
            details=[{"field": name, "message": f"integer from {lo} to {hi}"}],
        )
    return value


@routes.get("/api/v1/jobs")
@operation(
    {
        "summary": "List the caller's jobs, newest first",
        "operationId": "listJobs",
        "security": SECURED,
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
            "200": json_spec(ref("JobList"), "A page of jobs"),
            **AUTH_ERRORS,
            "422": err("Bad paging parameters"),
        },
    }
)
async def list_jobs(request: web.Request) -> web.Response:
    svc = runtime_of(request)
    who = await authenticate(request)
    limit = _int_param(request, "limit", 20, 1, 100)
    offset = _int_param(request, "offset", 0, 0, 10_000_000)
    status = request.query.get("status")
    if status is not None and status not in JOB_STATUSES:
        raise ApiError(
            422,
            "invalid_request",
            f"status must be one of {', '.join(JOB_STATUSES)}",
            details=[{"field": "status", "message": "unknown status"}],
        )
    jobs, total = await svc.jobs.list(who.user_id, limit, offset, status)
    next_offset = offset + limit if offset + limit < total else None
    return _json(
        JobList(
            jobs=[job_view(j) for j in jobs],
            total=total,
            limit=limit,
            offset=offset,
            next_offset=next_offset,
        )
    )
