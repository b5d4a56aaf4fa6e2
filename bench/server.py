"""Boot a real ``mtctl serve`` subprocess for a bench section, and always stop it.

Same approach as the functional tests' service fixture (a free loopback port, a temporary
MTB_DATA_DIR, readiness polled on /readyz, users made with ``mtctl users create`` whose
last stdout line is the API key), without importing test code.

    with embedded_service({"MTB_RATE_LIMIT_ENTERPRISE": "1000000"}) as svc:
        key = svc.new_user("enterprise")
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MTCTL = [sys.executable, "-m", "control_plane.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    env: dict[str, str]
    proc: subprocess.Popen
    log_path: Path
    boot_seconds: float = 0.0

    def mtctl(self, *args: str, timeout: float = 120) -> str:
        out = subprocess.run(
            [*MTCTL, *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"mtctl {' '.join(args)} failed:\n{out.stderr[-3000:]}")
        return out.stdout

    def new_user(self, tier: str, email: str | None = None) -> str:
        """A new user of ``tier``; returns its API key."""
        email = email or f"bench-{tier}-{uuid.uuid4().hex[:8]}@example.com"
        out = self.mtctl("users", "create", "--email", email, "--tier", tier)
        return out.strip().splitlines()[-1]

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def cpu_seconds(self) -> float | None:
        """user + system CPU time of the server process (all its threads) so far."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, grace: float = 30) -> int | None:
        """SIGTERM, then kill after ``grace`` seconds; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as r:  # noqa: S310 - loopback
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(url: str, proc: subprocess.Popen, timeout: float, log_tail) -> None:  # noqa: ANN001
    """Until ``mtctl serve`` at ``url`` answers /readyz 200; RuntimeError with
    ``log_tail()`` if it exits or takes longer than ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not _ready(url):
        if proc.poll() is not None:
            raise RuntimeError(f"mtctl serve exited {proc.returncode}:\n{log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"mtctl serve not ready in {timeout} s:\n{log_tail()}")
        time.sleep(0.25)


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
    port = free_port()
    env = {
        **os.environ,
        "MTB_DATA_DIR": str(tmp),
        "MTB_MODEL_DIR": str(model_dir),
        "MTB_DATABASE_URL": f"sqlite:///{tmp / 'service.db'}",
        "MTB_QUEUE": "memory",
        "MTB_INFERENCE": "local",
        "MTB_HOST": "127.0.0.1",
        "MTB_PORT": str(port),
        "MTB_JWT_SECRET": "bench-secret-" + uuid.uuid4().hex,
        # throughput is measured here, not fair use: no word quota
        "MTB_QUOTA_WORDS_PER_MINUTE_ENTERPRISE": "0",
        "MTB_QUOTA_WORDS_PER_DAY_ENTERPRISE": "0",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    log_path = tmp / "serve.log"
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*MTCTL, "serve"], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )
    server = Server(f"http://127.0.0.1:{port}", env, proc, log_path)
    try:
        wait_ready(server.url, proc, boot_timeout, server.log_tail)
        server.boot_seconds = time.monotonic() - t0
        yield server
    finally:
        server.stop()
        if not keep_dir:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
