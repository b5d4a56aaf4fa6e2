"""``mtctl serve``: the REST service (embedded mode by default: SQLite, in-process queue
and engine). SIGTERM and SIGINT shut it down cleanly: in-flight requests finish, workers
stop, and unfinished chunks are picked up again on the next start."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path


def _port(raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {raw!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {port}")
    return port


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the REST service (settings from MTB_* variables)",
        description="Run the REST API with its workers in this process. Embedded by "
        "default: SQLite database and JWT secret in MTB_DATA_DIR (default "
        "~/.cache/mt-backend/data), in-process queue and engine, models from "
        "MTB_MODEL_DIR; MTB_DATABASE_URL, MTB_QUEUE=kafka and MTB_INFERENCE=triton switch "
        "to the production stack. SIGINT (Ctrl-C) or SIGTERM drains: in-flight requests "
        "finish, workers finish the batch in hand (MTB_DRAIN_TIMEOUT_S), and unfinished "
        "chunks are picked up again on the next start.",
    )
    p.add_argument("--host", default=None, help="bind address (MTB_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=None, help="port (MTB_PORT, default 8080)")
    p.set_defaults(func=run, stdout_optional=True)  # logs go to stderr


def _check_listen(host: str, port: int) -> str | None:
    """Why the service could not listen on host:port, or None: found before the app starts
    its workers and engine (an unresolvable host, a port in use or not allowed)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve host {host!r}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # as aiohttp binds: SO_REUSEADDR, so a port in TIME_WAIT is not "in use"
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None


def _check_data_dir(settings) -> str | None:  # noqa: ANN001
    """Why MTB_DATA_DIR cannot hold the SQLite database or the JWT secret, or None. Only
    checked where it is used: with PostgreSQL and MTB_JWT_SECRET it may be read-only."""
    if settings.database_url and settings.jwt_secret:
        return None
    path = Path(settings.data_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = "not a directory" if path.exists() else exc.strerror
        return f"MTB_DATA_DIR {path}: {reason}"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"MTB_DATA_DIR {path}: not writable"
    return None


def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from control_plane import logs, tracing
    from control_plane.api import create_app
    from control_plane.settings import Settings

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = Settings.from_env(**overrides)
    logs.configure("DEBUG" if args.verbose else settings.log_level, settings.log_format)
    tracing.configure(settings)
    log = logging.getLogger("control_plane.serve")
    from control_plane.queue.kafka.topics import KafkaAuthError
    from control_plane.security import ConfigError, kafka_client_kwargs, resolve_jwt_secret

    problem = _check_data_dir(settings) or _check_listen(settings.host, settings.port)
    if problem:
        print(f"mtctl serve: {problem}", file=sys.stderr)
        return 2
    try:  # no known default secret: generated (embedded) or required (PostgreSQL/Kafka)
        resolve_jwt_secret(settings)
        if settings.queue == "kafka":
            kafka_client_kwargs(settings)  # SASL/TLS settings that cannot work
    except ConfigError as exc:
        print(f"mtctl serve: {exc}", file=sys.stderr)
        return 2
    log.info(
        "starting",
        extra={"host": settings.host, "port": settings.port, "queue": settings.queue,
               "inference": settings.inference,
               "database": settings.effective_database_url.split("@")[-1]},
    )  # fmt: skip
    try:
        web.run_app(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            print=lambda msg: log.info(msg.strip().splitlines()[0]),
            shutdown_timeout=10.0,
            access_log=None,
            handle_signals=True,
        )
    except KafkaAuthError as exc:  # wrong SASL credentials: a message, not a traceback
        print(f"mtctl serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the port taken between the check and the bind, and the like
        log.debug("serve failed", exc_info=True)
        print(f"mtctl serve: {exc}", file=sys.stderr)
        return 2
    log.info("stopped")
    return 0
