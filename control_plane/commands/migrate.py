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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from control_plane.db.database import make_engine, migrate
    from control_plane.settings import Settings

    settings = Settings.from_env()
    url = settings.effective_database_url
    engine = make_engine(url)
    try:
        migrate(engine, args.revision)
    finally:
        engine.dispose()
    print(f"mtctl migrate: {url.split('@')[-1]} at {args.revision}", file=sys.stderr)
    return 0
