"""`mtctl serve` booted as a subprocess, once per database backend (sqlite, postgres).

The session-scoped ``service`` fixture is parametrized over the two databases; pytest
groups the tests by it, so each server (and its model) loads once. Users are created with
``mtctl users create`` (its last stdout line is the key). Teardown sends SIGTERM and
checks the server exits cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from bench.server import free_port, wait_ready

from ..conftest import REPO

MTCTL = [sys.executable, "-m", "control_plane.cli"]
RATE_LIMIT_BASIC = 20  # per minute; the 429 test spends a basic key's budget
MAX_WORDS = 20_000  # the 15,000-word document fits; the 413 test sends more
CALLBACK_SECRET = "functional-callback-secret"


@dataclass
class Service:
    backend: str
    url: str
    env: dict[str, str]
    proc: subprocess.Popen
    log_path: Path
    keys: dict[str, str] = field(default_factory=dict)
    webhook_secrets: dict[str, str] = field(default_factory=dict)  # API key -> its secret

    def mtctl(self, *args: str, input: str | None = None, timeout: float = 300) -> str:
        out = subprocess.run(
            [*MTCTL, *args],
            env=self.env,
            cwd=REPO,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert out.returncode == 0, f"mtctl {' '.join(args)} failed:\n{out.stderr[-3000:]}"
        return out.stdout

    def new_user(self, tier: str, email: str | None = None) -> str:
        email = email or f"{tier}-{uuid.uuid4().hex[:8]}@example.com"
        out = self.mtctl("users", "create", "--email", email, "--tier", tier)
        lines = out.strip().splitlines()  # ..., webhook secret, "API key ...:", key
        self.webhook_secrets[lines[-1]] = lines[-3]
        return lines[-1]

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]


def _database_url(request: pytest.FixtureRequest, backend: str, tmp: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'service.db'}"
    postgres_url = request.getfixturevalue("postgres_url")
    from tests.conftest import mtb_services

    return mtb_services.create_database("mtb_functional_service", postgres_url)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def service(request, model_dir, tmp_path_factory):
    backend = request.param
    tmp = tmp_path_factory.mktemp(f"service-{backend}")
    port = free_port()
    env = {
        **os.environ,
        "MTB_DATA_DIR": str(tmp),
        "MTB_MODEL_DIR": str(model_dir),
        "MTB_DATABASE_URL": _database_url(request, backend, tmp),
        "MTB_HOST": "127.0.0.1",
        "MTB_PORT": str(port),
        "MTB_RATE_LIMIT_BASIC": str(RATE_LIMIT_BASIC),
        "MTB_RATE_LIMIT_PRO": "100000",
        "MTB_RATE_LIMIT_ENTERPRISE": "100000",
        "MTB_MAX_WORDS": str(MAX_WORDS),
        "MTB_JWT_SECRET": "functional-tests-secret-at-least-32-bytes",
        "MTB_CALLBACK_SECRET": CALLBACK_SECRET,
        "MTB_CALLBACK_BACKOFF_S": "0.2",
        "MTB_CALLBACK_ALLOW_HOSTS": "127.0.0.1",  # the callback receivers listen on loopback
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*MTCTL, "serve"], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )
    svc = Service(backend, f"http://127.0.0.1:{port}", env, proc, log_path)
    try:
        wait_until_ready(svc)
        for who, tier in [
            ("enterprise", "enterprise"),
            ("pro", "pro"),
            ("basic", "basic"),
            ("other", "enterprise"),
            ("limited", "basic"),
        ]:
            svc.keys[who] = svc.new_user(tier)
        yield svc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail(f"mtctl serve ignored SIGTERM for 30 s:\n{svc.log_tail()}")
            assert rc == 0, f"mtctl serve exited {rc} on SIGTERM:\n{svc.log_tail()}"


def wait_until_ready(svc: Service, timeout: float = 300) -> None:
    """Until the `mtctl serve` subprocess answers /readyz 200; fails with its log tail if it
    exits or times out."""
    try:
        wait_ready(svc.url, svc.proc, timeout, svc.log_tail)
    except RuntimeError as exc:
        pytest.fail(str(exc))


def wait_for(svc: Service, job_id: str, who: str = "enterprise", timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = requests.get(f"{svc.url}/api/v1/jobs/{job_id}", headers=svc.headers(who), timeout=10)
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job not finished in {timeout} s: {job}")
        time.sleep(0.2)
