"""The shared local services, in start order (``down`` stops them in reverse). A new
service is a module with a ``SPEC`` (see ``devstack.spec``) and one line here."""

from __future__ import annotations

from devstack import jaeger, kafka, postgres, prometheus, triton
from devstack.spec import ServiceSpec

SPECS: dict[str, ServiceSpec] = {
    "postgres": postgres.SPEC,
    "kafka": kafka.SPEC,
    "triton": triton.SPEC,
    "jaeger": jaeger.SPEC,  # traces (issue 13); built once with Go into ~/.cache
    "prometheus": prometheus.SPEC,  # scrapes serve, workers, Triton; rules from dashboards/
}
SERVICES: tuple[str, ...] = tuple(SPECS)
