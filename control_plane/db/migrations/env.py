"""Alembic environment: run programmatically by control_plane.db.migrate on a connection."""

from alembic import context

from control_plane.db.models import SQLModel

target_metadata = SQLModel.metadata
connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - always driven by control_plane.db.migrate
    raise RuntimeError("run migrations through control_plane.db.migrate(engine)")

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
