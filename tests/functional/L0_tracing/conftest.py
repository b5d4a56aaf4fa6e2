"""``jaeger``: Jaeger v2 (devstack.jaeger) for the tracing scenarios. The shared server
started like PostgreSQL and Kafka (a lease; one from `make services` is reused and stays)
once devstack.registry lists jaeger; until then a private one on free ports for the
session. Where the jaeger binary cannot be built (no Go toolchain, the module proxy
refused) the tests that need it skip with that reason; any other start failure fails them."""

from __future__ import annotations

import pytest

import devstack
from devstack.jaeger import JaegerUnavailable, start_jaeger
from tests.conftest import _keep_services


@pytest.fixture(scope="session")
def jaeger(request, services_config, tmp_path_factory) -> devstack.ServiceInfo:
    """The running Jaeger: ``.env['MTB_OTLP_ENDPOINT']`` (OTLP gRPC, ``http://host:port``),
    ``.url`` == ``.env['MTB_JAEGER_URL']`` (the query API's base URL)."""
    shared = "jaeger" in devstack.SERVICES
    lease = shared and not _keep_services()
    try:
        if shared:
            info = devstack.ensure_service("jaeger", services_config, lease=lease)
        else:
            info = start_jaeger(tmp_path_factory.mktemp("jaeger"), timeout=60)
    except JaegerUnavailable as exc:
        pytest.skip(f"Jaeger v2 cannot be built on this machine: {exc}")
    except devstack.ServiceError as exc:
        pytest.fail(f"could not start jaeger: {exc}", pytrace=False)
    if lease:
        request.addfinalizer(lambda: devstack.release_service("jaeger", services_config))
    elif not shared:
        request.addfinalizer(info.stop)
    return info
