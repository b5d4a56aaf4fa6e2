"""`mtctl serve` for the functional tests, booted with ``devstack.processes`` (the same
launcher as the benchmarks): a ``Service`` with the scenario's users, and one shutdown
check. Each scenario keeps its own settings; only the booting is shared here."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from devstack.processes import MtctlProcess, ProcessError, start_serve

JWT_SECRET = "functional-tests-secret-at-least-32-bytes"


@dataclass
class Service:
    """A running `mtctl serve` and the API keys of the scenario's users."""

    backend: str
    server: MtctlProcess
    keys: dict[str, str] = field(default_factory=dict)
    webhook_secrets: dict[str, str] = field(default_factory=dict)  # API key -> its secret

    @property
    def url(self) -> str:
        assert self.server.url is not None
        return self.server.url

    @property
    def env(self) -> dict[str, str]:
        return self.server.env

    @property
    def log_path(self) -> Path:
        return self.server.log_path

    def mtctl(self, *args: str, input: str | None = None, timeout: float = 300) -> str:
        try:
            return self.server.mtctl(*args, input=input, timeout=timeout)
        except ProcessError as exc:
            raise AssertionError(str(exc)) from None

    def new_user(self, tier: str, email: str | None = None) -> str:
        """A new user of ``tier``; returns its API key (its webhook secret is kept)."""
        try:
            user = self.server.new_user(tier, email)
        except ProcessError as exc:
            raise AssertionError(str(exc)) from None
        self.webhook_secrets[user.key] = user.webhook_secret
        return user.key

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def log_tail(self, n: int = 4000) -> str:
        return self.server.log_tail(n)


def boot_service(
    backend: str,
    env: Mapping[str, str],
    log_path: Path,
    users: Sequence[tuple[str, str]],
    timeout: float = 300,
) -> Service:
    """Start `mtctl serve` with ``env``, wait for /readyz and create ``users`` (name,
    tier); fails the test with the server's log tail when it does not come up."""
    svc = Service(backend, start_serve(env, log_path))
    try:
        try:
            svc.server.wait_ready(timeout)
        except ProcessError as exc:
            pytest.fail(str(exc))
        for who, tier in users:
            svc.keys[who] = svc.new_user(tier)
    except BaseException:
        svc.server.stop()
        raise
    return svc


def shutdown_problems(proc: MtctlProcess, *, expect_exit_0: bool, timeout: float = 30) -> list[str]:
    """SIGTERM ``proc`` (kill after ``timeout``); what went wrong, for one pytest.fail."""
    if proc.proc.poll() is not None:
        return []
    rc = proc.stop(timeout)
    if proc.ignored_sigterm:
        return [f"{proc.name} ignored SIGTERM for {timeout:.0f} s:\n{proc.log_tail()}"]
    if expect_exit_0 and rc != 0:
        return [f"{proc.name} exited {rc} on SIGTERM:\n{proc.log_tail()}"]
    return []


@contextlib.contextmanager
def running_service(
    backend: str,
    env: Mapping[str, str],
    log_path: Path,
    users: Sequence[tuple[str, str]] = (),
    *,
    expect_exit_0: bool = True,
    timeout: float = 300,
) -> Iterator[Service]:
    """``boot_service`` for a ``with`` block; stopped at its end (SIGTERM, and with
    ``expect_exit_0`` the exit status must be 0)."""
    svc = boot_service(backend, env, log_path, users, timeout)
    try:
        yield svc
    finally:
        problems = shutdown_problems(svc.server, expect_exit_0=expect_exit_0)
        if problems:
            pytest.fail("\n".join(problems))


def wait_for(svc: Service, job_id: str, who: str = "enterprise", timeout: float = 120) -> dict:
    """Poll the job until it is completed, failed or cancelled."""
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
