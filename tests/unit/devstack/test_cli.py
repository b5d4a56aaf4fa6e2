"""``python -m devstack`` without starting servers."""

from __future__ import annotations

import os
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


def test_install(tmp_path):
    """``install prometheus`` where a prometheus binary is on PATH: nothing to do, said so;
    a package it does not know: a usage error naming the choices, no traceback."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "prometheus"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "MTB_SERVICES_DIR": str(tmp_path),
    }
    run = [sys.executable, "-m", "devstack", "install"]
    out = subprocess.run([*run, "prometheus"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert f"{fake} already installed" in out.stdout
    out = subprocess.run([*run, "grafana"], capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "choose from 'prometheus'" in out.stderr
    assert "Traceback" not in out.stderr
