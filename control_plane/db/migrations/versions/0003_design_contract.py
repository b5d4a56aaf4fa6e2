"""the design's record: job cost/timing/confidence/metadata, cache TTL, per-user limits

Jobs gain the design's ``translation_jobs`` fields (``content_hash``, ``metadata``,
``processing_time_ms``, ``words_per_minute``, ``confidence_score``, ``assigned_instance``,
``retry_count``) and ``actual_cost`` becomes the design's ``cost_usd``; the job and chunk
status ``running`` becomes the contract's ``processing``. Chunks keep their engine time and
confidence so a job's cost and score sum over every worker that touched it. The segment
cache gains ``access_count``, ``last_accessed`` and ``ttl_expires_at``; users gain
``rate_limit_per_minute`` and a per-user ``webhook_secret``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 23:50:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as b:
        b.add_column(sa.Column("rate_limit_per_minute", sa.Integer(), nullable=True))
        b.add_column(
            sa.Column("webhook_secret", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True)
        )
    # plain RENAME COLUMN (PostgreSQL, SQLite >= 3.25): a batch alter would copy the jobs
    # table on SQLite, which its chunks' foreign key forbids
    op.execute("ALTER TABLE jobs RENAME COLUMN actual_cost TO cost_usd")
    with op.batch_alter_table("jobs", schema=None) as b:
        b.add_column(
            sa.Column(
                "content_hash",
                sqlmodel.sql.sqltypes.AutoString(length=64),
                nullable=False,
                server_default="",
            )
        )
        b.add_column(sa.Column("metadata", sa.Text(), nullable=True))
        b.add_column(sa.Column("processing_time_ms", sa.Integer(), nullable=True))
        b.add_column(sa.Column("words_per_minute", sa.Float(), nullable=True))
        b.add_column(sa.Column("confidence_score", sa.Float(), nullable=True))
        b.add_column(
            sa.Column(
                "assigned_instance", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True
            )
        )
        b.add_column(sa.Column("retry_count", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("chunks", schema=None) as b:
        b.add_column(sa.Column("engine_seconds", sa.Float(), nullable=False, server_default="0"))
        b.add_column(sa.Column("confidence", sa.Float(), nullable=True))
    with op.batch_alter_table("segment_cache", schema=None) as b:
        b.add_column(sa.Column("access_count", sa.Integer(), nullable=False, server_default="0"))
        b.add_column(sa.Column("last_accessed", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        b.add_column(
            sa.Column("ttl_expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        b.create_index("ix_segment_cache_expiry", ["ttl_expires_at"], unique=False)
    op.execute("UPDATE jobs SET status = 'processing' WHERE status = 'running'")
    op.execute("UPDATE chunks SET status = 'processing' WHERE status = 'running'")
    # finished jobs from before: their figures follow from what the row already has
    op.execute(
        "UPDATE jobs SET processing_time_ms = 0 WHERE status = 'completed' AND started_at IS NULL"
    )


def downgrade() -> None:
    op.execute("UPDATE jobs SET status = 'running' WHERE status = 'processing'")
    op.execute("UPDATE chunks SET status = 'running' WHERE status = 'processing'")
    with op.batch_alter_table("segment_cache", schema=None) as b:
        b.drop_index("ix_segment_cache_expiry")
        for col in ("ttl_expires_at", "last_accessed", "access_count"):
            b.drop_column(col)
    with op.batch_alter_table("chunks", schema=None) as b:
        b.drop_column("confidence")
        b.drop_column("engine_seconds")
    with op.batch_alter_table("jobs", schema=None) as b:
        for col in (
            "retry_count", "assigned_instance", "confidence_score", "words_per_minute",
            "processing_time_ms", "metadata", "content_hash",
        ):  # fmt: skip
            b.drop_column(col)
    op.execute("ALTER TABLE jobs RENAME COLUMN cost_usd TO actual_cost")
    with op.batch_alter_table("users", schema=None) as b:
        b.drop_column("webhook_secret")
        b.drop_column("rate_limit_per_minute")
