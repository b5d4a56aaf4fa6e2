"""Database engine, schema migrations and a small executor for blocking DB calls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

log = logging.getLogger(__name__)
T = TypeVar("T")
MIGRATIONS = Path(__file__).with_name("migrations")


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 here."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=True
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


# SQLite errors that mean "the file cannot be used right now", not "the statement is wrong"
# (SQLite reports "no such table" and friends as OperationalError too).
_SQLITE_TRANSIENT = ("locked", "busy", "unable to open", "disk i/o", "readonly database")


def is_database_unavailable(exc: BaseException | None) -> bool:
    """True when ``exc`` (or an exception it was raised from) says the database cannot be
    reached or used right now: the server is down or restarting, a connection broke, the
    pool timed out, a transaction was rolled back by a deadlock. Such an error is no fault
    of the chunk being worked on, so workers wait and retry instead of spending one of its
    attempts (issue 10: outages delay jobs, they never fail them)."""
    import sqlalchemy.exc as sa_exc

    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        psycopg = None  # type: ignore[assignment]
    seen = 0
    while exc is not None and seen < 8:
        seen += 1
        if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            return True
        if isinstance(exc, sa_exc.DisconnectionError | sa_exc.TimeoutError):
            return True  # pool: no live connection, or none free in time
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            orig = exc.orig
            if type(orig).__module__ == "sqlite3":
                return any(word in str(orig).lower() for word in _SQLITE_TRANSIENT)
            return True
        if psycopg is not None and isinstance(
            exc, psycopg.OperationalError | psycopg.InterfaceError
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with alembic (creates it on an empty database)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


class Database:
    """The engine plus a thread pool so async code never blocks on the database.

    SQLite serialises writers anyway, so it gets one thread; PostgreSQL gets a few.
    """

    def __init__(self, url: str):
        self.url = normalize_url(url)
        self.engine = make_engine(self.url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._pool = ThreadPoolExecutor(
            max_workers=1 if self.is_sqlite else 6, thread_name_prefix="db"
        )

    def migrate(self) -> None:
        migrate(self.engine)

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    def ping(self) -> bool:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.engine.dispose()
