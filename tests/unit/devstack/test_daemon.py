"""Detached server processes: pid checks and stopping."""

from __future__ import annotations

import signal
import subprocess
import time

from devstack import daemon


def test_stop_pid_terminates_and_reports(tmp_path):
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5  # until exec, /proc/PID/cmdline is still Python's
        while not daemon.pid_alive(proc.pid, "sleep") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert daemon.pid_alive(proc.pid, "sleep")
        assert not daemon.pid_alive(proc.pid, "postgres")  # marker guards against reuse
        t0 = time.monotonic()
        assert daemon.stop_pid(proc.pid, signal.SIGTERM, timeout=5)
        assert time.monotonic() - t0 < 5
        assert proc.wait(timeout=5) == -signal.SIGTERM
        assert not daemon.pid_alive(proc.pid)
        assert not daemon.stop_pid(proc.pid)
    finally:
        proc.kill()
