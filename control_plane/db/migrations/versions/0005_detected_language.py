"""detected source language: jobs.detected_language and jobs.detection_confidence

A job submitted with ``source_language: "auto"`` keeps what detection said (ISO 639-1
code and the detector's confidence, 0-1); NULL for a job whose caller named the
language.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 03:10:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN without a batch copy (SQLite refuses to copy jobs: the chunks' foreign key)
    with op.batch_alter_table("jobs", schema=None) as b:
        b.add_column(
            sa.Column(
                "detected_language", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True
            )
        )
        b.add_column(sa.Column("detection_confidence", sa.Float(), nullable=True))


def downgrade() -> None:
    for col in ("detection_confidence", "detected_language"):
        op.execute(f"ALTER TABLE jobs DROP COLUMN {col}")
