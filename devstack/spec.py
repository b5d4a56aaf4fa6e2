"""What a local service declares about itself, so that config, leases, status and the CLI
need no per-service branches: adding a service is one module that builds a ``ServiceSpec``
plus one line in ``devstack.registry``."""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devstack.config import Config
    from devstack.daemon import ServiceInfo


@dataclass(frozen=True)
class Port:
    """One loopback port of a service: the ``Config`` attribute that holds it, its key in
    ``ServiceInfo.ports``, the variable and flag that override it, and its default."""

    field: str
    key: str
    env_var: str
    default: int

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")


@dataclass(frozen=True)
class ServiceSpec:
    """How to start, probe and stop one shared local server."""

    name: str
    start: Callable[[Config], ServiceInfo]
    probe: Callable[[Mapping[str, Any]], bool]  # is the recorded running server ready?
    ports: tuple[Port, ...]
    pid_marker: str  # a word of the command line that proves a pid is still our server
    stop_signal: int = signal.SIGTERM
    # Refuse to reuse a running server that does not fit ``cfg`` (ServiceError).
    check_reuse: Callable[[Config, ServiceInfo], None] | None = None
    # Extra data folders to delete on ``down --purge`` besides data/ and backends/.
    purge: Callable[[Config], None] | None = None

    def wanted_ports(self, cfg: Config) -> dict[str, int]:
        return {port.key: int(getattr(cfg, port.field)) for port in self.ports}
