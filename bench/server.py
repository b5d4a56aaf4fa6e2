"""Boot a real ``mtctl serve`` subprocess for a bench section, and always stop it.

The process is started by ``devstack.processes`` (the launcher the functional tests use
too): a free loopback port, a temporary MTB_DATA_DIR, readiness polled on /readyz, users
made with ``mtctl users create``.

    with embedded_service({"MTB_RATE_LIMIT_ENTERPRISE": "1000000"}) as svc:
        key = svc.new_user("enterprise")
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devstack.processes import MtctlProcess, serve_env, start_serve


@dataclass
class Server:
    """The bench's view of a running ``mtctl serve``."""

    process: MtctlProcess

    @property
    def url(self) -> str:
        assert self.process.url is not None
        return self.process.url

    @property
    def env(self) -> dict[str, str]:
        return self.process.env

    @property
    def boot_seconds(self) -> float:
        return self.process.boot_seconds

    def mtctl(self, *args: str, timeout: float = 120) -> str:
        return self.process.mtctl(*args, timeout=timeout)

    def new_user(self, tier: str, email: str | None = None) -> str:
        """A new user of ``tier``; returns its API key."""
        email = email or f"bench-{tier}-{uuid.uuid4().hex[:8]}@example.com"
        return self.process.new_user(tier, email).key

    def log_tail(self, n: int = 4000) -> str:
        return self.process.log_tail(n)

    def cpu_seconds(self) -> float | None:
        return self.process.cpu_seconds()

    def stop(self, grace: float = 30) -> int | None:
        """SIGTERM, then kill after ``grace`` seconds; returns the exit code."""
        return self.process.stop(grace)


@contextlib.contextmanager
def embedded_service(
    extra_env: dict[str, str] | None = None,
    model_dir: str | Path | None = None,
    boot_timeout: float = 300,
    keep_dir: bool = False,
) -> Iterator[Server]:
    """``mtctl serve`` in embedded mode (SQLite, memory queue, local inference) on a free
    loopback port with a temporary data folder; stopped (SIGTERM, then kill) on exit."""
    from control_plane.settings import Settings

    model_dir = Path(model_dir or os.environ.get("MTB_MODEL_DIR") or Settings().model_dir)
    tmp = Path(tempfile.mkdtemp(prefix="mtb-bench-"))
    env = serve_env(
        os.environ,
        tmp,
        model_dir,
        MTB_DATABASE_URL=f"sqlite:///{tmp / 'service.db'}",
        MTB_QUEUE="memory",
        MTB_INFERENCE="local",
        MTB_JWT_SECRET="bench-secret-" + uuid.uuid4().hex,
        # throughput is measured here, not fair use: no word quota
        MTB_QUOTA_WORDS_PER_MINUTE_ENTERPRISE="0",
        MTB_QUOTA_WORDS_PER_DAY_ENTERPRISE="0",
        **(extra_env or {}),
    )
    server = Server(start_serve(env, tmp / "serve.log"))
    try:
        server.process.wait_ready(boot_timeout)
        yield server
    finally:
        server.stop()
        if not keep_dir:
            shutil.rmtree(tmp, ignore_errors=True)
