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

    from control_plane.db.database import migrate

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


def _downgrade(engine, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from control_plane.db.database import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def _0004_up_and_down(db) -> None:
    """0004 adds jobs.format/glossary_id/options and glossaries to a database holding
    jobs and chunks (existing jobs read as plain text, no options), and goes back down."""
    from sqlalchemy import text

    from control_plane.db.database import migrate

    migrate(db.engine, "0003")
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, email, tier, api_key_hash, api_key_prefix, active, "
                "created_at) VALUES ('u1', 'a@b.c', 'pro', 'h', 'p', true, "
                "'2026-01-01 00:00:00+00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO jobs (id, user_id, status, priority, source_lang, target_lang, "
                "model_version, word_count, chunk_count, chunks_done, words_processed, "
                "segment_count, cached_segments, source_text, estimated_cost, created_at) "
                "VALUES ('j1', 'u1', 'queued', 'high', 'en', 'pt', 'v', 2, 1, 0, 0, 1, 0, "
                "'Hi there', 0.1, '2026-01-01 00:00:00+00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO chunks (job_id, chunk_index, status, word_count, source_text, "
                "attempts, writes, updated_at) VALUES ('j1', 0, 'queued', 2, 'Hi there', 0, "
                "0, '2026-01-01 00:00:00+00')"
            )
        )
    db.migrate()
    with db.engine.begin() as conn:
        row = conn.execute(text("SELECT format, glossary_id, options FROM jobs")).one()
        assert tuple(row) == ("text", None, None)
        conn.execute(
            text(
                "INSERT INTO glossaries (id, user_id, name, terms, content_hash, term_count, "
                "created_at, updated_at) VALUES ('g1', 'u1', 'n', '{}', 'h', 0, "
                "'2026-01-01 00:00:00+00', '2026-01-01 00:00:00+00')"
            )
        )
        conn.execute(text("UPDATE jobs SET format = 'html', options = '{\"format\":\"html\"}'"))
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    uniques = {tuple(u["column_names"]) for u in inspect(db.engine).get_unique_constraints(
        "glossaries"
    )}  # fmt: skip
    assert ("user_id", "name") in uniques
    _downgrade(db.engine, "0003")
    insp = inspect(db.engine)
    assert "glossaries" not in insp.get_table_names()
    assert not {"format", "glossary_id", "options"} & {c["name"] for c in insp.get_columns("jobs")}
    with db.engine.connect() as conn:  # the rows are still there
        assert conn.execute(text("SELECT count(*) FROM chunks")).scalar_one() == 1
    db.migrate()  # and up again
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT format FROM jobs")).scalar_one() == "text"


def test_0004_up_and_down_sqlite(tmp_path):
    _0004_up_and_down(Database(f"sqlite:///{tmp_path / 'o.db'}"))


def test_0004_up_and_down_postgres(postgres_url):
    import uuid

    import devstack

    name = f"mig_{uuid.uuid4().hex[:8]}"
    url = devstack.create_database(name, postgres_url)
    db = Database(url)
    try:
        _0004_up_and_down(db)
    finally:
        db.close()
        devstack.drop_database(name, postgres_url)


def test_0005_detected_language_up_and_down(tmp_path):
    """0005 adds jobs.detected_language/detection_confidence (NULL for existing jobs)."""
    from sqlalchemy import text

    from control_plane.db.database import migrate

    db = Database(f"sqlite:///{tmp_path / 'd.db'}")
    migrate(db.engine, "0004")
    db.migrate()
    cols = {c["name"] for c in inspect(db.engine).get_columns("jobs")}
    assert {"detected_language", "detection_confidence"} <= cols
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    _downgrade(db.engine, "0004")
    cols = {c["name"] for c in inspect(db.engine).get_columns("jobs")}
    assert not {"detected_language", "detection_confidence"} & cols
    db.migrate()
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar_one() == 0
    db.close()
