"""``mtctl serve``: the REST service (embedded mode by default: SQLite, in-process queue
and engine). SIGTERM and SIGINT shut it down cleanly: in-flight requests finish, workers
stop, and unfinished chunks are picked up again on the next start."""

from __future__ import annotations

import argparse
import logging
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the REST service (settings from MTB_* variables)")
    p.add_argument("--host", default=None, help="bind address (MTB_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (MTB_PORT, default 8080)")
    p.set_defaults(func=run)


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
    log.info("stopped")
    return 0
