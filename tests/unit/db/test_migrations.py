"""The alembic migrations create exactly the sqlmodel tables (no drift), idempotently."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from control_plane.db import Database, normalize_url


def test_migrate_matches_models_and_is_idempotent(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate()
    db.migrate()
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    insp = inspect(db.engine)
    assert {"users", "jobs", "chunks", "segment_cache", "alembic_version"} <= set(
        insp.get_table_names()
    )
    uniques = {tuple(u["column_names"]) for u in insp.get_unique_constraints("chunks")}
    assert ("job_id", "chunk_index") in uniques
    assert {"ix_jobs_user_created", "ix_jobs_status_priority"} <= {
        i["name"] for i in insp.get_indexes("jobs")
    }


def test_postgres_urls_use_psycopg():
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
