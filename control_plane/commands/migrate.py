"""``mtctl migrate``: bring the database schema to the newest revision (alembic) and exit.

Every process migrates on start anyway; in Kubernetes a Job runs this first so that a
rollout of the API and workers never races several migrations against one database."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "migrate",
        help="upgrade the database schema (MTB_DATABASE_URL) and exit",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("--revision", default="head", help="alembic revision (default: head)")
    p.set_defaults(func=run, stdout_optional=True)  # it reports on stderr


def database_error(exc: BaseException) -> str | None:
    """One line for a database that cannot be used (a bad MTB_DATABASE_URL, a refused
    connection, a file that is not a database, an unknown revision), or None when ``exc``
    is not such an error. The driver's own first line, never the URL (it may hold a
    password) nor SQLAlchemy's SQL and background link."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

    if isinstance(exc, (NoSuchModuleError, ArgumentError)):
        return f"MTB_DATABASE_URL: {exc}"
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        detail = str(exc.orig).strip().splitlines()
        return f"database error: {detail[0] if detail else type(exc.orig).__name__}"
    if isinstance(exc, SQLAlchemyError):
        return f"database error: {str(exc).strip().splitlines()[0]}"
    if isinstance(exc, CommandError):  # alembic: an unknown --revision and the like
        return str(exc)
    if isinstance(exc, OSError):  # the SQLite file's folder cannot be created
        name = f"cannot create {exc.filename}: " if exc.filename else ""
        return f"database error: {name}{exc.strerror or exc}"
    return None


def run(args: argparse.Namespace) -> int:
    from control_plane.db.database import make_engine, migrate
    from control_plane.settings import Settings

    settings = Settings.from_env()
    url = settings.effective_database_url
    try:
        engine = make_engine(url)
        try:
            migrate(engine, args.revision)
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - database ones become one line, others raise
        message = database_error(exc)
        if message is None:
            raise
        print(f"mtctl migrate: {message}", file=sys.stderr)
        return 2
    print(f"mtctl migrate: {url.split('@')[-1]} at {args.revision}", file=sys.stderr)
    return 0
