"""PostgreSQL from Debian's packages (``apt-get install postgresql`` when missing): a
cluster of our own under ``.services/postgres`` on 127.0.0.1, run as the ``postgres``
system user when we are root (PostgreSQL refuses root). Database and user ``mtb``
(password ``mtb``); ``create_database``/``drop_database`` give tests throwaway ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devstack.config import Config
from devstack.daemon import (
    ServiceInfo,
    apt_install,
    check_ports_free,
    is_root,
    pid_alive,
    run_command,
    spawn,
    stop_pid,
    wait_ready,
)
from devstack.errors import ServiceError
from devstack.spec import Port, ServiceSpec

PG_USER = "mtb"
PG_PASSWORD = "mtb"
PG_DATABASE = "mtb"
PG_SUPERUSER = "postgres"


def pg_url(port: int, database: str = PG_DATABASE, host: str = "127.0.0.1") -> str:
    """The URL of user ``mtb`` (TCP, password) on our server."""
    return f"postgresql://{PG_USER}:{PG_PASSWORD}@{host}:{port}/{database}"


def find_pg_bindir() -> Path | None:
    """Newest ``/usr/lib/postgresql/<ver>/bin`` that has initdb (Debian's layout)."""
    found = []
    for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        with contextlib.suppress(ValueError):
            found.append((int(initdb.parent.parent.name.split(".")[0]), initdb.parent))
    return max(found)[1] if found else None


def postgres_conf(port: int, socket_dir: Path) -> str:
    """Our settings, included from postgresql.conf (rewritten at every start)."""
    return (
        "# Written by devstack at every start; edits here are lost.\n"
        "listen_addresses = '127.0.0.1'\n"
        f"port = {port}\n"
        f"unix_socket_directories = '{socket_dir}'\n"
        "max_connections = 200\n"
        "shared_buffers = 128MB\n"
        # Throwaway local data: trade crash safety for test speed on small machines.
        "fsync = off\n"
        "synchronous_commit = off\n"
        "full_page_writes = off\n"
        "log_min_messages = warning\n"
        "log_timezone = 'UTC'\n"
        "timezone = 'UTC'\n"
    )


def pg_hba_conf() -> str:
    """Unix socket (inside .services): trust; TCP on loopback: password (scram)."""
    return (
        "# Written by devstack.\n"
        "# TYPE  DATABASE  USER  ADDRESS       METHOD\n"
        "local   all       all                 trust\n"
        "host    all       all   127.0.0.1/32  scram-sha-256\n"
        "host    all       all   ::1/128       scram-sha-256\n"
    )


def _pg_fallback_dir(cfg: Config, what: str) -> Path:
    digest = hashlib.sha1(str(cfg.state_dir).encode()).hexdigest()[:10]
    return Path("/var/tmp") / f"mtb-postgres-{digest}" / what


def _pg_socket_dir(cfg: Config, data_dir: Path) -> Path:
    sock_dir = data_dir.parent / "run"
    # A unix socket path must fit in 107 bytes.
    if len(str(sock_dir / f".s.PGSQL.{cfg.pg_port}")) > 100:
        sock_dir = _pg_fallback_dir(cfg, "run")
    return sock_dir


def _pg_data_dir(cfg: Config, user: str | None) -> Path:
    """``.services/postgres/data``, unless the server's user cannot reach it (a checkout
    under a private home folder): then a folder under /var/tmp named after the checkout."""
    data_dir = cfg.service_dir("postgres") / "data"
    if user is None:
        return data_dir
    probe = subprocess.run(
        ["test", "-w", str(data_dir.parent), "-a", "-x", str(data_dir.parent)],
        stdin=subprocess.DEVNULL,
        user=user,
        group=user,
        extra_groups=[],
    )
    if probe.returncode == 0:
        return data_dir
    fallback = _pg_fallback_dir(cfg, "data")
    print(
        f"postgres: user {user} cannot reach {data_dir.parent}; using {fallback}",
        file=sys.stderr,
    )
    return fallback


def _pg_user() -> str | None:
    """PostgreSQL refuses to run as root: use the package's ``postgres`` user then."""
    return PG_SUPERUSER if is_root() else None


def _chown_tree(path: Path, user: str) -> None:
    import pwd

    pw = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for entry in [root, *(os.path.join(root, d) for d in dirs)]:
            os.chown(entry, pw.pw_uid, pw.pw_gid)
        for f in files:
            os.chown(os.path.join(root, f), pw.pw_uid, pw.pw_gid)


def _psql_superuser(cfg: Config, socket_dir: Path, bindir: Path, sql: str) -> str:
    cmd = [
        str(bindir / "psql"),
        "-X",
        "-q",
        "-tA",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        str(socket_dir),
        "-p",
        str(cfg.pg_port),
        "-U",
        PG_SUPERUSER,
        "-d",
        "postgres",
        "-c",
        sql,
    ]
    return run_command(cmd, "psql").strip()


def _pg_query_ok(url: str) -> bool:
    try:
        import psycopg
    except ImportError:
        return True  # pg_isready already passed and psql ran the bootstrap
    with psycopg.connect(url, connect_timeout=3) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


def _postgres_start(cfg: Config) -> ServiceInfo:
    pg_dir = cfg.service_dir("postgres")
    log_path = pg_dir / "postgres.log"
    user = _pg_user()
    pg_dir.mkdir(parents=True, exist_ok=True)
    bindir = find_pg_bindir()
    if bindir is None:
        print("postgres: installing PostgreSQL with apt-get ...", file=sys.stderr, flush=True)
        apt_install(["postgresql"], pg_dir / "apt.log")
        bindir = find_pg_bindir()
        if bindir is None:
            raise ServiceError("postgres: apt-get installed postgresql but no initdb was found")
    check_ports_free("postgres", {"port": cfg.pg_port})
    if user is not None:
        cfg.state_dir.chmod(cfg.state_dir.stat().st_mode | 0o011)  # let postgres traverse
        _chown_tree(pg_dir, user)
    data_dir = _pg_data_dir(cfg, user)
    if data_dir.parent != pg_dir:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        if user is not None:
            _chown_tree(data_dir.parent, user)
    if not (data_dir / "PG_VERSION").exists():
        if data_dir.exists():
            shutil.rmtree(data_dir)  # a half-done initdb
        run_command(
            [
                str(bindir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                PG_SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ],
            "postgres initdb",
            pg_dir / "initdb.log",
            cwd=data_dir.parent,
            **({"user": user, "group": user, "extra_groups": []} if user else {}),
        )
        with open(data_dir / "postgresql.conf", "a") as fh:
            fh.write("\ninclude_if_exists = 'mtb.conf'\n")
    socket_dir = _pg_socket_dir(cfg, data_dir)
    socket_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "mtb.conf").write_text(postgres_conf(cfg.pg_port, socket_dir))
    (data_dir / "pg_hba.conf").write_text(pg_hba_conf())
    if user is not None:
        _chown_tree(data_dir.parent, user)
        _chown_tree(socket_dir, user)
    lock = data_dir / "postmaster.pid"
    if lock.exists():
        first = lock.read_text().split("\n", 1)[0].strip()
        if first.isdigit() and pid_alive(int(first), "postgres"):
            raise ServiceError(
                f"postgres: pid {first} already runs on {data_dir} but is not recorded in"
                f" {cfg.service_dir('postgres') / 'state.json'};"
                f" stop it (kill -INT {first}) and retry"
            )
        lock.unlink()  # left by a killed server

    t0 = time.monotonic()
    proc = spawn(
        [str(bindir / "postgres"), "-D", str(data_dir)],
        log_path,
        cwd=data_dir.parent,
        user=user,
        env=dict(os.environ, HOME=str(data_dir.parent)),
    )
    url = pg_url(cfg.pg_port)
    isready = [str(bindir / "pg_isready"), "-q", "-h", str(socket_dir), "-p", str(cfg.pg_port)]
    isready += ["-U", PG_SUPERUSER, "-d", "postgres"]
    wait_ready(
        "postgres",
        proc,
        lambda: subprocess.run(isready, stdin=subprocess.DEVNULL).returncode == 0,
        cfg.timeout,
        log_path,
    )
    try:
        _pg_bootstrap(cfg, socket_dir, bindir)
        wait_ready("postgres", proc, lambda: _pg_query_ok(url), cfg.timeout, log_path)
    except ServiceError:
        stop_pid(proc.pid, signal.SIGINT, 15)
        raise
    return ServiceInfo(
        name="postgres",
        pid=proc.pid,
        url=url,
        ports={"port": cfg.pg_port},
        env={"MTB_DATABASE_URL": url},
        log_path=log_path,
        started=True,
        urls={"database": url, "socket_dir": str(socket_dir), "data_dir": str(data_dir)},
        startup_s=time.monotonic() - t0,
    )


def _pg_bootstrap(cfg: Config, socket_dir: Path, bindir: Path) -> None:
    """Role and database ``mtb`` (idempotent)."""

    def psql(sql: str) -> str:
        return _psql_superuser(cfg, socket_dir, bindir, sql)

    if psql(f"SELECT 1 FROM pg_roles WHERE rolname='{PG_USER}'") != "1":
        psql(f"CREATE ROLE {PG_USER} LOGIN CREATEDB PASSWORD '{PG_PASSWORD}'")
    if psql(f"SELECT 1 FROM pg_database WHERE datname='{PG_DATABASE}'") != "1":
        psql(f"CREATE DATABASE {PG_DATABASE} OWNER {PG_USER}")


_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _check_identifier(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"database name must match {_IDENTIFIER.pattern}: {name!r}")
    return name


def _admin_sql(url: str, statements: list[str]) -> None:
    """Run statements outside a transaction (CREATE/DROP DATABASE) as the URL's user."""
    try:
        import psycopg
    except ImportError:
        bindir = find_pg_bindir()
        if bindir is None:
            raise ServiceError("neither psycopg nor psql is available") from None
        for sql in statements:
            run_command(
                [str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], sql
            )
        return
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        for sql in statements:
            conn.execute(sql)


def _with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


def create_database(name: str, url: str | None = None, *, replace: bool = True) -> str:
    """Create (by default: drop and re-create) database ``name`` owned by ``mtb``.

    ``url`` is any database URL of a user with CREATEDB (default: ``MTB_DATABASE_URL``, else
    the local server's). Returns the URL of the new database.
    """
    _check_identifier(name)
    url = url or os.environ.get("MTB_DATABASE_URL") or Config.from_env().database_url
    statements = [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'] if replace else []
    statements.append(f'CREATE DATABASE "{name}"')
    _admin_sql(url, statements)
    return _with_database(url, name)


def drop_database(name: str, url: str | None = None) -> None:
    """Drop database ``name`` (closing its connections) if it exists."""
    _check_identifier(name)
    url = url or os.environ.get("MTB_DATABASE_URL") or Config.from_env().database_url
    _admin_sql(url, [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'])


def _purge_fallback(cfg: Config) -> None:
    shutil.rmtree(_pg_fallback_dir(cfg, "data").parent, ignore_errors=True)


def _probe(state: Mapping[str, Any]) -> bool:
    return _pg_query_ok(state["url"])


# SIGTERM is postgres' "smart" shutdown that waits for clients to disconnect; SIGINT is
# its documented fast shutdown.
SPEC = ServiceSpec(
    name="postgres",
    start=_postgres_start,
    probe=_probe,
    ports=(Port("pg_port", "port", "MTB_PG_PORT", 25432),),
    pid_marker="postgres",
    stop_signal=signal.SIGINT,
    purge=_purge_fallback,
)
