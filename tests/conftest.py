"""Shared pytest fixtures.

Sections: (1) real local services (PostgreSQL, Kafka, Triton) from ``devstack``.
Add new groups of fixtures as new sections below.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import devstack

REPO_ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- (1) local services
#
# Session-scoped: each fixture reuses a server that already runs (`make services`) or
# starts it. At the end a server that test sessions started is stopped once no other live
# test session uses it; one started by `make services` stays. MTB_TEST_REUSE_SERVICES=1
# keeps everything running for the next run (stop it with `make services-down`).
# Ports and the state folder follow devstack.Config (MTB_PG_PORT, ... MTB_SERVICES_DIR).


def _keep_services() -> bool:
    return os.environ.get("MTB_TEST_REUSE_SERVICES", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def services_config():
    """devstack's Config (ports, .services/ folder) from the environment."""
    return devstack.Config.from_env()


def _session_service(request: pytest.FixtureRequest, name: str, cfg):
    # A lease: a server that test sessions started stops when the last session using it
    # ends (parallel sessions in one checkout share it); one from `make services` stays.
    # MTB_TEST_REUSE_SERVICES=1: no lease, as with `make services`: the server stays up.
    lease = not _keep_services()
    try:
        info = devstack.ensure_service(name, cfg, lease=lease)
    except devstack.ServiceError as exc:
        pytest.fail(f"could not start {name}: {exc}", pytrace=False)
    if lease:
        request.addfinalizer(lambda: devstack.release_service(name, cfg))
    return info


@pytest.fixture(scope="session")
def postgres_url(request, services_config) -> str:
    """URL of database ``mtb`` (user mtb) on the local PostgreSQL.

    For a throwaway database: ``devstack.create_database("name", postgres_url)``.
    """
    return _session_service(request, "postgres", services_config).url


@pytest.fixture(scope="session")
def kafka_bootstrap(request, services_config) -> str:
    """``127.0.0.1:PORT`` of the local single-node Kafka (KRaft).

    Topics: ``devstack.create_topics(kafka_bootstrap, [...], partitions)``.
    """
    return _session_service(request, "kafka", services_config).url


def _has_models(repo: Path) -> bool:
    return repo.is_dir() and any((d / "config.pbtxt").is_file() for d in repo.iterdir())


@pytest.fixture(scope="session")
def triton_server(request, services_config):
    """Triton on ``model_repository/`` (a ServiceInfo: ``.url`` is gRPC host:port,
    ``.urls['http']``, ``.urls['metrics']``). Skipped while the repository has no model."""
    if not _has_models(services_config.model_repository):
        pytest.skip(f"no model with a config.pbtxt in {services_config.model_repository} yet")
    return _session_service(request, "triton", services_config)


@pytest.fixture(scope="session")
def triton_factory(tmp_path_factory) -> Iterator[Callable[..., object]]:
    """Start private Triton servers on any model repository (free ports, own log).

    ``server = triton_factory(repo_dir)``; all are stopped at the end of the session.
    """
    started = []

    def start(model_repository, **kwargs):
        kwargs.setdefault("workdir", tmp_path_factory.mktemp("triton"))
        server = devstack.start_triton(model_repository, **kwargs)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()
