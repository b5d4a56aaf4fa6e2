"""``mtctl serve`` and ``mtctl worker`` as subprocesses, the one way tests and benchmarks
boot the application: an environment, a log file, readiness, SIGTERM with a timeout,
``kill -9``.

Readiness never reads log text: ``mtctl serve`` is ready when ``/readyz`` answers 200;
``mtctl worker`` (no HTTP server) writes the file named by ``MTB_READY_FILE`` once its
consumers are started and removes it on exit.

    api = start_serve(serve_env(os.environ, tmp, model_dir, MTB_QUEUE="kafka"), tmp / "serve.log")
    api.wait_ready()
    key = api.new_user("enterprise").key
    worker = start_worker(api.env, tmp / "worker-0.log", name="worker-0")
    worker.wait_ready()
    ...
    worker.stop(); api.stop()
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devstack.config import REPO_ROOT
from devstack.daemon import free_port

MTCTL = [sys.executable, "-m", "control_plane.cli"]
READY_FILE_VAR = "MTB_READY_FILE"


class ProcessError(RuntimeError):
    """An mtctl subprocess exited, was not ready in time, or a command failed; the
    message carries the tail of its log."""


@dataclass(frozen=True)
class NewUser:
    """What ``mtctl users create`` prints: the API key (last line) and the user's
    webhook secret (third line from the end)."""

    key: str
    webhook_secret: str


def serve_env(
    base: Mapping[str, str],
    data_dir: Path,
    model_dir: str | Path,
    *,
    port: int | None = None,
    **settings: str,
) -> dict[str, str]:
    """The environment of an ``mtctl serve`` on a free loopback port with its data in
    ``data_dir``: ``base`` (usually ``os.environ``), then the scenario's ``settings``."""
    return {
        **base,
        "MTB_DATA_DIR": str(data_dir),
        "MTB_MODEL_DIR": str(model_dir),
        "MTB_HOST": "127.0.0.1",
        "MTB_PORT": str(port or free_port()),
        "PYTHONUNBUFFERED": "1",
        **settings,
    }


def run_mtctl(
    env: Mapping[str, str], *args: str, input: str | None = None, timeout: float = 300
) -> str:
    """A short ``mtctl`` command (``users create``, ...) with ``env``; its stdout, or
    ProcessError with its stderr when it fails."""
    out = subprocess.run(
        [*MTCTL, *args],
        env=dict(env),
        cwd=REPO_ROOT,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise ProcessError(f"mtctl {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def new_user(env: Mapping[str, str], tier: str, email: str | None = None) -> NewUser:
    """A new user of ``tier`` in the database of ``env``."""
    email = email or f"{tier}-{uuid.uuid4().hex[:8]}@example.com"
    out = run_mtctl(env, "users", "create", "--email", email, "--tier", tier)
    lines = out.strip().splitlines()  # ..., webhook secret, "API key ...:", key
    return NewUser(key=lines[-1], webhook_secret=lines[-3] if len(lines) >= 3 else "")


@dataclass
class MtctlProcess:
    """One running ``mtctl serve`` or ``mtctl worker``."""

    name: str
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: Path
    url: str | None = None  # serve: http://127.0.0.1:PORT
    ready_file: Path | None = None  # worker: MTB_READY_FILE
    started_at: float = 0.0
    boot_seconds: float = 0.0
    ignored_sigterm: bool = False  # stop() had to kill it

    # -- log -------------------------------------------------------------------------

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 4000) -> str:
        return self.log()[-n:]

    # -- readiness -------------------------------------------------------------------

    def is_ready(self) -> bool:
        """serve: ``/readyz`` answers 200; worker: its ready file exists."""
        if self.ready_file is not None:
            return self.ready_file.exists()
        assert self.url is not None
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:  # noqa: S310
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 300) -> MtctlProcess:
        """Until ready; ProcessError with the log tail if it exits or takes longer."""
        deadline = time.monotonic() + timeout
        while not self.is_ready():
            if self.proc.poll() is not None:
                raise ProcessError(
                    f"{self.name} exited {self.proc.returncode} before it was ready:\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise ProcessError(f"{self.name} not ready in {timeout} s:\n{self.log_tail()}")
            time.sleep(0.2)
        self.boot_seconds = time.monotonic() - self.started_at
        self._scrape(True)
        return self

    def _scrape(self, on: bool) -> None:
        """Be (or stop being) a target of the local Prometheus (devstack.prometheus):
        serve's /metrics, or a worker's MTB_METRICS_PORT. Harmless when none runs."""
        port = self.env.get("MTB_PORT") if self.url else self.env.get("MTB_METRICS_PORT")
        if not port or port == "0":
            return
        from devstack import prometheus

        job = "mtb-api" if self.url else "mtb-worker"
        try:
            if on:
                prometheus.register_target(job, f"127.0.0.1:{port}")
            else:
                prometheus.unregister_target(job, f"127.0.0.1:{port}")
        except OSError as exc:  # a read-only services folder: no scraping, nothing else
            print(f"devstack: prometheus target not written: {exc}", file=sys.stderr)

    # -- mtctl commands against the same database ------------------------------------

    def mtctl(self, *args: str, input: str | None = None, timeout: float = 300) -> str:
        return run_mtctl(self.env, *args, input=input, timeout=timeout)

    def new_user(self, tier: str, email: str | None = None) -> NewUser:
        return new_user(self.env, tier, email)

    # -- resources and shutdown ------------------------------------------------------

    def cpu_seconds(self) -> float | None:
        """user + system CPU time of the process (all its threads) so far."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` if it still runs (stop several processes at once, then wait)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, wait up to ``timeout`` s, then kill -9 (``ignored_sigterm`` set);
        returns the exit code."""
        self._scrape(False)
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.ignored_sigterm = True
            self.kill9()
            return self.proc.returncode

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


def _start(argv: list[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [*MTCTL, *argv],
            env=dict(env),
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def start_serve(
    env: Mapping[str, str], log_path: Path, *, name: str = "mtctl serve"
) -> MtctlProcess:
    """``mtctl serve`` on ``MTB_HOST``/``MTB_PORT`` of ``env`` (see ``serve_env``); call
    ``wait_ready()`` before using it."""
    env = dict(env)
    url = f"http://{env.get('MTB_HOST', '127.0.0.1')}:{env['MTB_PORT']}"
    t0 = time.monotonic()
    proc = _start(["serve"], env, log_path)
    return MtctlProcess(name, proc, env, log_path, url=url, started_at=t0)


def start_worker(
    env: Mapping[str, str], log_path: Path, *, name: str = "worker", args: tuple[str, ...] = ()
) -> MtctlProcess:
    """``mtctl worker [args]`` with ``MTB_READY_FILE`` next to its log; call
    ``wait_ready()`` before counting on it."""
    ready_file = log_path.with_suffix(".ready")
    ready_file.unlink(missing_ok=True)
    env = {**env, READY_FILE_VAR: str(ready_file)}
    t0 = time.monotonic()
    proc = _start(["worker", *args], env, log_path)
    return MtctlProcess(name, proc, env, log_path, ready_file=ready_file, started_at=t0)
