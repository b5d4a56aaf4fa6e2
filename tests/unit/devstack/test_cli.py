"""``python -m devstack`` without starting servers."""

from __future__ import annotations

import subprocess
import sys

import devstack


def test_cli(tmp_path):
    """Help, status/env of nothing (exit 3), an unknown service (exit 1, no traceback)."""
    run = [sys.executable, "-m", "devstack"]
    out = subprocess.run([*run, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "up" in out.stdout and "down" in out.stdout
    out = subprocess.run([*run, "up", "--help"], capture_output=True, text=True)
    assert "--pg-port" in out.stdout and "--model-repository" in out.stdout
    # the port flags come from the registered services
    assert "--triton-metrics-port" in out.stdout and "MTB_KAFKA_CONTROLLER_PORT" in out.stdout
    state = ["--state-dir", str(tmp_path)]
    out = subprocess.run([*run, "status", *state], capture_output=True, text=True)
    assert out.returncode == 3 and out.stdout.count("stopped") == len(devstack.SERVICES)
    out = subprocess.run([*run, "env", *state], capture_output=True, text=True)
    assert out.returncode == 3 and "no services running" in out.stderr
    out = subprocess.run([*run, "up", "--only", "redis", *state], capture_output=True, text=True)
    assert out.returncode == 1 and "unknown service" in out.stderr
    assert "Traceback" not in out.stderr
    out = subprocess.run([*run, "down", *state], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.count("was not running") == len(devstack.SERVICES)
