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


def test_0003_carries_existing_rows_forward(tmp_path):
    """A database from before the design's contract keeps its jobs: ``running`` becomes
    ``processing`` and ``actual_cost`` is kept as ``cost_usd``."""
    from sqlalchemy import text

    from control_plane.db.engine import migrate

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    migrate(db.engine, "0002")
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, email, tier, api_key_hash, api_key_prefix, active, "
                "created_at) VALUES ('u1', 'a@b.c', 'pro', 'h', 'p', 1, '2026-01-01 00:00:00')"
            )
        )
        for job_id, status, cost in (("j1", "running", None), ("j2", "completed", 0.25)):
            conn.execute(
                text(
                    "INSERT INTO jobs (id, user_id, status, priority, source_lang, target_lang, "
                    "model_version, word_count, chunk_count, chunks_done, words_processed, "
                    "segment_count, cached_segments, source_text, estimated_cost, actual_cost, "
                    "created_at) VALUES (:id, 'u1', :st, 'high', 'en', 'pt', 'v', 2, 1, 0, 0, "
                    "1, 0, 'Hi there', 0.1, :cost, '2026-01-01 00:00:00')"
                ),
                {"id": job_id, "st": status, "cost": cost},
            )
        conn.execute(
            text(
                "INSERT INTO chunks (job_id, chunk_index, status, word_count, source_text, "
                "attempts, writes, updated_at) VALUES ('j1', 0, 'running', 2, 'Hi there', 1, 0, "
                "'2026-01-01 00:00:00')"
            )
        )
    db.migrate()
    with db.engine.connect() as conn:
        jobs = dict(conn.execute(text("SELECT id, status FROM jobs")).all())
        cost = conn.execute(text("SELECT cost_usd FROM jobs WHERE id = 'j2'")).scalar_one()
        chunk = conn.execute(text("SELECT status FROM chunks")).scalar_one()
        retry = conn.execute(text("SELECT retry_count FROM jobs WHERE id = 'j1'")).scalar_one()
    assert jobs == {"j1": "processing", "j2": "completed"}
    assert cost == 0.25
    assert chunk == "processing"
    assert retry == 0
