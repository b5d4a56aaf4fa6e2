"""translation options: jobs.format/glossary_id/options and stored glossaries

Jobs gain ``format`` (text|html|xml, existing rows: text), ``glossary_id`` (the stored
glossary the request named, shown with the job) and ``options`` (the resolved protection
options as JSON, glossary terms included, so a later edit of the stored glossary does not
change a queued job; NULL: the defaults). ``glossaries`` holds each user's stored
glossaries, one name per user.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 12:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN: no table copy on SQLite (a batch copy of jobs is refused by the chunks'
    # foreign key there)
    with op.batch_alter_table("jobs", schema=None) as b:
        b.add_column(
            sa.Column(
                "format",
                sqlmodel.sql.sqltypes.AutoString(length=8),
                nullable=False,
                server_default="text",
            )
        )
        b.add_column(
            sa.Column("glossary_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        b.add_column(sa.Column("options", sa.Text(), nullable=True))
    op.create_table(
        "glossaries",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.Column("content_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("term_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "name", name="uq_glossaries_user_name"),
    )


def downgrade() -> None:
    op.drop_table("glossaries")
    # plain DROP COLUMN (PostgreSQL, SQLite >= 3.35): a batch alter would copy the jobs
    # table on SQLite, which its chunks' foreign key forbids
    for col in ("options", "glossary_id", "format"):
        op.execute(f"ALTER TABLE jobs DROP COLUMN {col}")
