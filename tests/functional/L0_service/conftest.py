"""`mtctl serve` booted as a subprocess, once per database backend (sqlite, postgres).

The session-scoped ``service`` fixture is parametrized over the two databases; pytest
groups the tests by it, so each server (and its model) loads once. Users are created with
``mtctl users create`` (its last stdout line is the key). Teardown sends SIGTERM and
checks the server exits cleanly.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import devstack
from devstack.processes import serve_env
from tests.functional.api_service import JWT_SECRET, Service, running_service, wait_for

__all__ = ["Service", "wait_for"]

RATE_LIMIT_BASIC = 20  # per minute; the 429 test spends a basic key's budget
MAX_WORDS = 20_000  # the 15,000-word document fits; the 413 test sends more
CALLBACK_SECRET = "functional-callback-secret"


def _database_url(request: pytest.FixtureRequest, backend: str, tmp: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'service.db'}"
    postgres_url = request.getfixturevalue("postgres_url")
    return devstack.create_database("mtb_functional_service", postgres_url)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def service(request, model_dir, tmp_path_factory):
    backend = request.param
    tmp = tmp_path_factory.mktemp(f"service-{backend}")
    env = serve_env(
        os.environ,
        tmp,
        model_dir,
        MTB_DATABASE_URL=_database_url(request, backend, tmp),
        MTB_RATE_LIMIT_BASIC=str(RATE_LIMIT_BASIC),
        MTB_RATE_LIMIT_PRO="100000",
        MTB_RATE_LIMIT_ENTERPRISE="100000",
        MTB_MAX_WORDS=str(MAX_WORDS),
        MTB_JWT_SECRET=JWT_SECRET,
        MTB_CALLBACK_SECRET=CALLBACK_SECRET,
        MTB_CALLBACK_BACKOFF_S="0.2",
        MTB_CALLBACK_ALLOW_HOSTS="127.0.0.1",  # the callback receivers listen on loopback
    )
    users = [
        ("enterprise", "enterprise"),
        ("pro", "pro"),
        ("basic", "basic"),
        ("other", "enterprise"),
        ("limited", "basic"),
    ]
    with running_service(backend, env, tmp / "serve.log", users) as svc:
        yield svc
