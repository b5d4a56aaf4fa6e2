"""Persistence: sqlmodel tables, alembic migrations, and the Database handle."""

from control_plane.db.database import Database, make_engine, migrate, normalize_url
from control_plane.db.models import (
    Chunk,
    Job,
    SegmentCacheEntry,
    User,
    as_utc,
    utcnow,
)

__all__ = [
    "Database",
    "make_engine",
    "migrate",
    "normalize_url",
    "Chunk",
    "Job",
    "SegmentCacheEntry",
    "User",
    "as_utc",
    "utcnow",
]
