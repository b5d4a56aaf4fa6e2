"""Request and response shapes of the REST API (pydantic; also the OpenAPI schemas)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from control_plane.domain import JOB_STATUSES, PRIORITIES
from control_plane.jobs.json_body import MAX_DEPTH, too_deep
from control_plane.jobs.request import (
    Format,
    TranslateRequest,  # noqa: F401 - in the OpenAPI document
    metadata_value,
)

log = logging.getLogger(__name__)

Priority = Literal[PRIORITIES]
Status = Literal[JOB_STATUSES]

FORMAT_DESCRIPTION = (
    "text, html, xml or a document format (po, xliff, markdown, srt, vtt, docx), as submitted"
)
JobFormat = Annotated[Format, Field(description=FORMAT_DESCRIPTION)]
DetectedLanguage = Annotated[
    str | None, Field(description='source_language "auto": the language detected (ISO 639-1)')
]
DetectionConfidence = Annotated[
    float | None, Field(description="source_language auto: the detector's confidence, 0-1")
]
GLOSSARY_ID_DESCRIPTION = (
    "the stored glossary the job was submitted with (its terms as they were then apply); null: none"
)
GlossaryId = Annotated[str | None, Field(description=GLOSSARY_ID_DESCRIPTION)]


def metadata_view(stored: str | None, job_id: str) -> dict[str, Any] | None:
    """A job's stored metadata as the API shows it. Admission bounds its nesting now, but
    rows kept before that may nest deeper than pydantic serializes (~250 levels) or json
    parses (~1,000): such a value is shown as null (and logged), so the one job, and the
    listing that holds it, can still be read."""
    try:
        value = metadata_value(stored)
    except (ValueError, RecursionError) as exc:
        log.warning("stored metadata unreadable", extra={"job_id": job_id, "error": repr(exc)})
        return None
    if value is None:  # no metadata: nearly every job
        return None
    if not isinstance(value, dict) or too_deep(value, MAX_DEPTH):
        log.warning("stored metadata not shown: too deep", extra={"job_id": job_id})
        return None
    return value


class Links(BaseModel):
    self: str
    result: str


def job_links(job_id: str) -> Links:
    return Links(self=f"/api/v1/jobs/{job_id}", result=f"/api/v1/jobs/{job_id}/result")


class SubmitResponse(BaseModel):
    job_id: str
    status: Status
    estimated_completion: datetime | None = Field(description="ISO 8601, UTC")
    priority: Priority
    word_count: int
    estimated_cost: float = Field(description="USD, from measured throughput")
    source_language: str
    target_language: str
    chunk_count: int
    metadata: dict[str, Any] | None
    format: JobFormat = "text"
    glossary_id: GlossaryId = None
    detected_language: DetectedLanguage = None
    detection_confidence: DetectionConfidence = None
    links: Links


class JobView(BaseModel):
    job_id: str
    status: Status
    progress: float = Field(description="0.0 to 1.0")
    created_at: datetime
    started_at: datetime | None
    estimated_completion: datetime | None
    word_count: int
    words_processed: int
    current_speed: float = Field(description="words per minute since the job started")
    priority: Priority
    source_language: str
    target_language: str
    chunks_total: int
    chunks_done: int
    estimated_cost: float = Field(description="USD, estimated at submit")
    cost_usd: float | None = Field(description="USD, actual (engine time over all workers)")
    completed_at: datetime | None
    processing_time_ms: int | None
    retry_count: int
    error: str | None
    metadata: dict[str, Any] | None
    format: JobFormat = "text"
    glossary_id: GlossaryId = None
    detected_language: DetectedLanguage = None
    detection_confidence: DetectionConfidence = None
    links: Links


class JobResult(BaseModel):
    job_id: str
    status: Status
    source_content: str
    translated_content: str
    source_language: str
    target_language: str
    word_count: int
    processing_time_ms: int | None = Field(description="from the first chunk taken to done")
    confidence_score: float | None = Field(
        description="0-1: word-weighted mean over segments of the geometric mean probability "
        "the model gave its output tokens (exp of the mean token log-probability)"
    )
    completed_at: datetime | None
    model_version: str
    cost_usd: float | None = Field(description="USD, actual (engine time over all workers)")
    words_per_minute: float | None
    metadata: dict[str, Any] | None
    format: JobFormat = "text"
    glossary_id: GlossaryId = None
    detected_language: DetectedLanguage = None
    detection_confidence: DetectionConfidence = None


class JobList(BaseModel):
    jobs: list[JobView]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class GlossaryBody(BaseModel):
    """POST /api/v1/glossaries (both fields) and PUT /api/v1/glossaries/{id} (either)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "ui-terms", "terms": {"file": "arquivo", "pull request": "pull request"}}
            ]
        },
    )
    name: str | None = Field(
        None, description="1 to 200 characters, unique among the caller's glossaries"
    )
    terms: dict[str, str] | None = Field(
        None,
        description="source term -> target term; 1 to 1000 terms of 1 to 200 characters "
        "each side; no two source terms equal ignoring case and surrounding spaces",
    )


class GlossarySummary(BaseModel):
    id: str
    name: str
    term_count: int
    content_hash: str = Field(description="sha256 of the terms (sorted JSON)")
    created_at: datetime
    updated_at: datetime


class GlossaryView(GlossarySummary):
    terms: dict[str, str]


class GlossaryList(BaseModel):
    glossaries: list[GlossarySummary]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class LanguagePair(BaseModel):
    source: str
    target: str
    model_version: str


class Languages(BaseModel):
    pairs: list[LanguagePair]
    ready: bool


class ErrorBody(BaseModel):
    code: str
    message: str
    details: object | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
