"""Request and response shapes of the REST API (pydantic; also the OpenAPI schemas)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

Priority = Literal["critical", "high", "normal"]
Status = Literal["queued", "running", "completed", "failed", "cancelled"]
LANG_PATTERN = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$"


class TranslateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "text": "Hello world.\n\nA second paragraph.",
                    "source_lang": "en",
                    "target_lang": "pt",
                    "priority": "normal",
                }
            ]
        },
    )

    text: str = Field(
        min_length=1, description="The document; paragraphs and line breaks are kept."
    )
    source_lang: str = Field(pattern=LANG_PATTERN, description="ISO 639 code, e.g. en")
    target_lang: str = Field(pattern=LANG_PATTERN, description="ISO 639 code, e.g. pt")
    priority: Priority = Field("normal", description="Capped by the caller's tier.")
    callback_url: AnyHttpUrl | None = Field(
        None, description="POSTed (HMAC-SHA256 signed) when the job completes or fails."
    )

    @field_validator("text")
    @classmethod
    def _text_ok(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text must contain at least one word")
        if "\x00" in v:
            raise ValueError("text must not contain NUL characters")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("text must be valid Unicode (no lone surrogates)") from exc
        return v

    @field_validator("source_lang", "target_lang")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower().replace("_", "-")

    @field_validator("callback_url")
    @classmethod
    def _url_len(cls, v: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if v is not None and len(str(v)) > 2048:
            raise ValueError("callback_url must be at most 2048 characters")
        return v


class SubmitResponse(BaseModel):
    job_id: str
    status: Status
    priority: Priority
    source_lang: str
    target_lang: str
    word_count: int
    chunk_count: int
    estimated_completion: datetime | None
    estimated_cost: float = Field(description="USD, from measured throughput")
    links: dict[str, str]


class JobView(BaseModel):
    job_id: str
    status: Status
    priority: Priority
    source_lang: str
    target_lang: str
    word_count: int
    words_processed: int
    progress: float = Field(description="0.0 to 1.0")
    current_speed: float = Field(description="words per second since the job started")
    chunks_total: int
    chunks_done: int
    cached_segments: int
    estimated_completion: datetime | None
    estimated_cost: float
    actual_cost: float | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    error: str | None
    links: dict[str, str]


class JobResult(BaseModel):
    job_id: str
    status: Status
    source_lang: str
    target_lang: str
    model_version: str
    word_count: int
    translated_text: str
    actual_cost: float | None
    completed_at: datetime | None


class JobList(BaseModel):
    jobs: list[JobView]
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
