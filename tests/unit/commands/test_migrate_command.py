"""``mtctl migrate`` (the Kubernetes migrations Job): an empty database gets every table."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy

from control_plane.cli import main


def test_migrate_creates_the_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "m.db"
    monkeypatch.setenv("MTB_DATABASE_URL", f"sqlite:///{db}")
    assert main(["migrate"]) == 0
    tables = set(sqlalchemy.inspect(sqlalchemy.create_engine(f"sqlite:///{db}")).get_table_names())
    assert {"alembic_version", "jobs"} <= tables
    assert main(["migrate"]) == 0  # idempotent: a rerun of the Job is harmless
