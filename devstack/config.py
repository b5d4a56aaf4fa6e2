"""Where the local services keep their state and which loopback ports they use: defaults,
then ``MTB_*`` variables, then explicit overrides (CLI flags, test fixtures). The port
fields come from the services' own ``ServiceSpec.ports`` so a new service brings its own."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.errors import ServiceError

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_FILE_NAME = "env"


def default_python() -> Path:
    """The project's venv interpreter (Triton's python stub runs models with it)."""
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    return venv_python if venv_python.exists() else Path(sys.executable)


# Config field -> environment variable that overrides its default (ports: see port_specs).
COMMON_ENV_VARS: dict[str, str] = {
    "state_dir": "MTB_SERVICES_DIR",
    "model_repository": "MTB_MODEL_REPOSITORY",
    "python": "MTB_SERVICES_PYTHON",
    "timeout": "MTB_SERVICES_TIMEOUT",
}


def port_specs() -> dict[str, Any]:
    """Config field -> ``Port`` of every registered service, in registry order."""
    from devstack.registry import SPECS  # the service modules import this module

    return {port.field: port for spec in SPECS.values() for port in spec.ports}


def env_vars() -> dict[str, str]:
    """Every Config field -> the variable that overrides it."""
    return {**COMMON_ENV_VARS, **{f: p.env_var for f, p in port_specs().items()}}


@dataclass
class Config:
    """Where the services keep their state and which loopback ports they use.

    Ports are below Linux's ephemeral range (32768-60999): with the ports there before
    (55432, 58000-58002, 59092), a test's client socket or a private server's free port
    once took 58002 just before Triton's session server wanted it, and CI failed. Read
    them as attributes (``cfg.pg_port``); they live in ``ports``.
    """

    state_dir: Path = REPO_ROOT / ".services"
    model_repository: Path = REPO_ROOT / "model_repository"
    python: Path = field(default_factory=default_python)  # interpreter for Triton's stub
    timeout: float = 180.0  # seconds to wait for one service to become ready
    ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, port in port_specs().items():
            self.ports.setdefault(name, port.default)

    def __getattr__(self, name: str) -> int:
        # only called when normal lookup fails: the port fields
        ports = self.__dict__.get("ports", {})
        if name in ports:
            return ports[name]
        raise AttributeError(name)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Defaults, then ``MTB_*`` variables (see ``env_vars``), then non-None overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, var in env_vars().items():
            raw = env.get(var, "")
            if raw:
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        fields = port_specs()
        unknown = set(values) - set(fields) - set(COMMON_ENV_VARS)
        if unknown:
            raise TypeError(f"unknown Config field(s): {', '.join(sorted(unknown))}")
        ports = {name: int(values.pop(name)) for name in list(values) if name in fields}
        cfg = cls(**values, ports=ports)
        cfg.timeout = float(cfg.timeout)
        cfg.state_dir = Path(cfg.state_dir).expanduser().resolve()
        cfg.model_repository = Path(cfg.model_repository).expanduser().resolve()
        cfg.python = Path(cfg.python).expanduser()
        return cfg

    def service_dir(self, name: str) -> Path:
        return self.state_dir / name

    @property
    def env_file(self) -> Path:
        return self.state_dir / ENV_FILE_NAME

    @property
    def database_url(self) -> str:
        from devstack.postgres import pg_url

        return pg_url(self.pg_port)


def parse_only(raw: str | Iterable[str] | None) -> list[str]:
    """``"kafka,postgres"`` -> services in registry order; unknown names are an error."""
    from devstack.registry import SERVICES

    if raw is None:
        return list(SERVICES)
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    names = {item.strip().lower() for item in items if item.strip()}
    unknown = names - set(SERVICES)
    if unknown:
        raise ServiceError(
            f"unknown service(s): {', '.join(sorted(unknown))}; choose from {', '.join(SERVICES)}"
        )
    return [name for name in SERVICES if name in names]
