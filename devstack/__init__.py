"""Real local PostgreSQL, Apache Kafka and Triton for tests, benchmarks and
``make services``, and the launcher of ``mtctl serve``/``mtctl worker`` subprocesses.

No Docker here: the project installs and starts what it needs itself. Everything lives
under ``.services/`` (``MTB_SERVICES_DIR`` overrides it): data, logs, ``state.json`` per
service, and ``.services/env`` with the connection settings of the running services::

    python -m devstack up [--only postgres,kafka,triton] [ports...]
    python -m devstack status | env | down [--purge]
    set -a; . .services/env; set +a

Modules: ``config`` (ports, folders), ``daemon`` (detached server processes),
``leases`` (shared servers, up/down/status), ``envfile``, one module per service
(``postgres``, ``kafka``, ``triton``) listed in ``registry``, ``cli``, and
``processes`` (``mtctl serve``/``worker`` subprocesses, readiness from /readyz or the
worker's ready file).

Only the standard library is needed to import this package; readiness checks use
psycopg and aiokafka when they are importable and fall back to ``pg_isready`` / the
broker's log otherwise.
"""

from __future__ import annotations

from devstack.config import REPO_ROOT, Config, parse_only
from devstack.daemon import ServiceInfo, free_port, pid_alive, port_free, stop_pid
from devstack.envfile import format_env_file, parse_env_text, read_env_file, refresh_env_file
from devstack.errors import ServiceError
from devstack.kafka import (
    create_topics,
    create_topics_async,
    delete_topics,
    delete_topics_async,
    start_kafka_sasl,
)
from devstack.leases import (
    down,
    ensure_service,
    release_service,
    running_state,
    status,
    stop_service,
    up,
)
from devstack.postgres import create_database, drop_database
from devstack.registry import SERVICES, SPECS
from devstack.triton import start_triton

__all__ = [
    "REPO_ROOT",
    "SERVICES",
    "SPECS",
    "Config",
    "ServiceError",
    "ServiceInfo",
    "create_database",
    "create_topics",
    "create_topics_async",
    "delete_topics",
    "delete_topics_async",
    "down",
    "drop_database",
    "ensure_service",
    "format_env_file",
    "free_port",
    "parse_env_text",
    "parse_only",
    "pid_alive",
    "port_free",
    "read_env_file",
    "refresh_env_file",
    "release_service",
    "running_state",
    "start_kafka_sasl",
    "start_triton",
    "status",
    "stop_pid",
    "stop_service",
    "up",
]
