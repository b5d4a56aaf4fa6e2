"""Tables after the design's schema: users, jobs, chunks, the segment cache and stored
glossaries.

The alembic migrations in ``migrations/versions`` create exactly these tables; a unit test
compares them so the two never drift.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(ts: datetime) -> datetime:
    """A stored timestamp as an aware UTC datetime (SQLite hands back naive datetimes for
    what was stored as UTC)."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: str = Field(primary_key=True, max_length=36)
    email: str = Field(max_length=320, unique=True, index=True)
    tier: str = Field(max_length=16, default="basic")
    # sha256 of the key (keys are 256-bit random, so a fast hash is enough); never the key
    api_key_hash: str = Field(max_length=64, unique=True, index=True)
    api_key_prefix: str = Field(max_length=16)
    active: bool = Field(default=True)
    # requests per minute for this user; None: the tier's default (MTB_RATE_LIMIT_<TIER>)
    rate_limit_per_minute: int | None = None
    # signs this user's webhook callbacks (HMAC-SHA256); shown once at creation. Kept in
    # clear because the signer needs it; None: users made before it existed (callbacks
    # fall back to the service-wide MTB_CALLBACK_SECRET)
    webhook_secret: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_user_created", "user_id", "created_at"),
        Index("ix_jobs_status_priority", "status", "priority"),
    )

    id: str = Field(primary_key=True, max_length=36)
    user_id: str = Field(foreign_key="users.id", max_length=36)
    status: str = Field(max_length=16, default="queued")
    priority: str = Field(max_length=16, default="normal")
    source_lang: str = Field(max_length=16)
    target_lang: str = Field(max_length=16)
    model_version: str = Field(max_length=128, default="")
    word_count: int = 0
    chunk_count: int = 0
    chunks_done: int = 0
    words_processed: int = 0
    segment_count: int = 0
    cached_segments: int = 0
    source_text: str = Field(sa_column=Column(Text, nullable=False))
    # sha256 of the source text (the design's content_hash): duplicate submissions show
    content_hash: str = Field(default="", max_length=64)
    result_text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    callback_url: str | None = Field(default=None, max_length=2048)
    # the caller's free JSON object (design: "metadata"), stored as JSON text; the
    # attribute cannot be called ``metadata`` (SQLAlchemy's declarative base owns that name)
    job_metadata: str | None = Field(
        default=None, sa_column=Column("metadata", Text, nullable=True)
    )
    # translation options (issue 11): ``format`` (text|html|xml) and the stored glossary
    # the job named, shown with its status; ``options`` is the resolved
    # ``Protection.options()`` as JSON (format, do_not_translate, the glossary's terms as
    # they were at submit, so editing the stored glossary later does not change the job),
    # plus ``glossary_id``; None: the defaults. Status and list reads never load it
    format: str = Field(default="text", max_length=8, sa_column_kwargs={"server_default": "text"})
    glossary_id: str | None = Field(default=None, max_length=64)
    options: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # source_language "auto": what detection said (ISO 639-1) and how sure it was (0-1)
    detected_language: str | None = Field(default=None, max_length=16)
    detection_confidence: float | None = None
    estimated_cost: float = 0.0
    # actual cost in USD: engine time summed over every worker that touched the job
    cost_usd: float | None = None
    processing_time_ms: int | None = None  # started -> completed
    words_per_minute: float | None = None  # word_count over processing time
    # word-weighted mean of the segments' scores (geometric mean token probability, 0-1)
    confidence_score: float | None = None
    assigned_instance: str | None = Field(default=None, max_length=256)  # worker @ inference
    retry_count: int = 0  # chunk attempts beyond the first, over all chunks
    estimated_completion: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    completed_at: datetime | None = None


class Chunk(SQLModel, table=True):
    __tablename__ = "chunks"
    __table_args__ = (
        UniqueConstraint("job_id", "chunk_index", name="uq_chunks_job_index"),
        Index("ix_chunks_status_updated", "status", "updated_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="jobs.id", max_length=36, index=True)
    chunk_index: int
    status: str = Field(max_length=16, default="queued")  # queued|processing|done|failed|cancelled
    word_count: int = 0
    source_text: str = Field(sa_column=Column(Text, nullable=False))
    result_text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Layout.dumps() of source_text, written at submit (which parses it anyway) so workers
    # skip sentence splitting; None (older rows): the worker parses source_text itself
    layout: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    attempts: int = 0
    # how many times a result was written; the unique constraint plus this counter prove
    # that a redelivered chunk never lands twice
    writes: int = 0
    # engine seconds this chunk's segments took (its share of each batch) and the
    # word-weighted mean segment score: summed into the job's cost and confidence when the
    # last chunk lands, whichever worker translated each chunk
    engine_seconds: float = 0.0
    confidence: float | None = None
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    updated_at: datetime = Field(default_factory=utcnow)


class SegmentCacheEntry(SQLModel, table=True):
    __tablename__ = "segment_cache"
    __table_args__ = (
        Index("ix_segment_cache_pair", "source_lang", "target_lang"),
        Index("ix_segment_cache_expiry", "ttl_expires_at"),
    )

    # sha256(normalized text, source, target, model version)
    key: str = Field(primary_key=True, max_length=64)
    source_lang: str = Field(max_length=16)
    target_lang: str = Field(max_length=16)
    model_version: str = Field(max_length=128)
    translation: str = Field(sa_column=Column(Text, nullable=False))
    score: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)
    # hits counted in batches (the LRU in front of the table absorbs most lookups); an
    # entry expires ttl after its last use (MTB_CACHE_TTL_S), so the table stops growing
    access_count: int = 0
    last_accessed: datetime | None = None
    ttl_expires_at: datetime | None = None


class Glossary(SQLModel, table=True):
    """A user's stored glossary (source term -> target term), referenced by jobs through
    ``glossary_id``; a job copies the terms at submit (``Job.options``)."""

    __tablename__ = "glossaries"
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_glossaries_user_name"),)

    id: str = Field(primary_key=True, max_length=36)
    user_id: str = Field(foreign_key="users.id", max_length=36)
    name: str = Field(max_length=200)
    # the terms as a JSON object, keys sorted
    terms: str = Field(sa_column=Column(Text, nullable=False))
    content_hash: str = Field(max_length=64)  # sha256 of ``terms``
    term_count: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
