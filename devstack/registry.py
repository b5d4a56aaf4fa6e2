"""The shared local services, in start order (``down`` stops them in reverse). A new
service is a module with a ``SPEC`` (see ``devstack.spec``) and one line here."""

from __future__ import annotations

from devstack import kafka, postgres, triton
from devstack.spec import ServiceSpec

SPECS: dict[str, ServiceSpec] = {
    "postgres": postgres.SPEC,
    "kafka": kafka.SPEC,
    "triton": triton.SPEC,
}
SERVICES: tuple[str, ...] = tuple(SPECS)
