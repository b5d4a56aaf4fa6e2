"""``.services/env``: the connection settings of the running services (and the local
stack's JWT secret) as plain ``KEY=VALUE`` lines, for shells and tests to source:

    set -a; . .services/env; set +a
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from devstack.config import Config
from devstack.daemon import atomic_write


def format_env_file(values: Mapping[str, str]) -> str:
    """Plain shell assignments only: the file is sourced by ``set -a; . .services/env``."""
    lines = [
        "# Written by devstack (python -m devstack) for the running local services.",
        "# Load it with: set -a; . .services/env; set +a",
    ]
    for key, value in values.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or re.search(r"[\s'\"$`\\]", value):
            raise ValueError(f"not a plain shell assignment: {key}={value!r}")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def parse_env_text(text: str) -> dict[str, str]:
    """Parse ``KEY=VALUE`` lines (comments, blank lines, ``export`` and quotes allowed)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def read_env_file(path: str | Path | None = None) -> dict[str, str]:
    """The settings in ``.services/env`` (or ``path``); empty when the file is missing."""
    path = Path(path) if path is not None else Config.from_env().env_file
    try:
        return parse_env_text(path.read_text())
    except FileNotFoundError:
        return {}


def local_jwt_secret(cfg: Config) -> str:
    """A random JWT secret for the local stack, kept in ``.services/jwt-secret`` (0600):
    with PostgreSQL or Kafka configured `mtctl serve`/`worker` refuse to start without
    MTB_JWT_SECRET, and every process of the local stack must share one."""
    path = cfg.state_dir / "jwt-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".jwt-secret.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
        os.replace(tmp, path)
    return path.read_text().strip()


def refresh_env_file(cfg: Config) -> dict[str, str]:
    """Rewrite ``.services/env`` from the services that run now (remove it when none),
    plus the local stack's MTB_JWT_SECRET (``local_jwt_secret``)."""
    from devstack.leases import running_state
    from devstack.registry import SERVICES

    values: dict[str, str] = {}
    for name in SERVICES:
        state = running_state(cfg, name)
        if state:
            values.update(state.get("env", {}))
    if values:
        values["MTB_JWT_SECRET"] = local_jwt_secret(cfg)
        atomic_write(cfg.env_file, format_env_file(values))
    else:
        cfg.env_file.unlink(missing_ok=True)
    return values
