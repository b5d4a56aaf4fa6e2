"""`mtctl serve` as a subprocess, once per database (sqlite, postgres), booted with the
same helpers as L0_service's ``service`` fixture (``serve_env``, ``running_service``) and
with the product's default limits (8 MiB bodies, 200,000 words).

It is a fixture of its own, not L0_service's imported: two session fixtures both named
``service`` would be grouped together by pytest and live at once, and L0_service's
PostgreSQL database (re-created on boot) would be dropped under the other server."""

from __future__ import annotations

import os

import pytest

import devstack
from devstack.processes import serve_env
from tests.functional.api_service import JWT_SECRET, running_service


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def hostile_service(request, model_dir, tmp_path_factory):
    backend = request.param
    tmp = tmp_path_factory.mktemp(f"hostile-{backend}")
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'service.db'}"
    else:
        url = devstack.create_database(
            "mtb_functional_hostile", request.getfixturevalue("postgres_url")
        )
    env = serve_env(
        os.environ,
        tmp,
        model_dir,
        MTB_DATABASE_URL=url,
        MTB_RATE_LIMIT_ENTERPRISE="100000",
        MTB_JWT_SECRET=JWT_SECRET,
    )
    with running_service(backend, env, tmp / "serve.log", [("enterprise", "enterprise")]) as svc:
        yield svc
