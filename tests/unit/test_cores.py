"""control_plane.cores: the cgroup quota files as a container sees them, and a real
``taskset`` pin seen from a child process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from control_plane import cores


def _files(tmp_path: Path, cpu_max: str | None = None, v1: tuple[str, str] | None = None):
    paths = {
        "cpu_max": tmp_path / "cpu.max",
        "cfs_quota": tmp_path / "cpu.cfs_quota_us",
        "cfs_period": tmp_path / "cpu.cfs_period_us",
    }
    if cpu_max is not None:
        paths["cpu_max"].write_text(cpu_max + "\n")
    if v1 is not None:
        paths["cfs_quota"].write_text(v1[0] + "\n")
        paths["cfs_period"].write_text(v1[1] + "\n")
    return paths


@pytest.mark.parametrize(
    ("cpu_max", "v1", "expected"),
    [
        ("max 100000", None, None),  # v2 without a limit
        ("200000 100000", None, 2),
        ("150000 100000", None, 2),  # 1.5 CPUs: round up, a lane may idle half the time
        ("50000 100000", None, 1),
        (None, ("-1", "100000"), None),  # v1 without a limit
        (None, ("300000", "100000"), 3),
        (None, None, None),  # no cgroup files (not Linux, or not mounted)
        ("garbage", None, None),
    ],
)
def test_quota_cores(tmp_path: Path, cpu_max, v1, expected) -> None:  # noqa: ANN001
    assert cores.quota_cores(**_files(tmp_path, cpu_max, v1)) == expected


def test_usable_cores_is_the_smaller_of_affinity_and_quota(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(cores, "quota_cores", lambda: None)
    assert cores.usable_cores() == 4
    monkeypatch.setattr(cores, "quota_cores", lambda: 2)
    assert cores.usable_cores() == 2
    monkeypatch.setattr(cores, "quota_cores", lambda: 8)
    assert cores.usable_cores() == 4


@pytest.mark.skipif(not shutil.which("taskset"), reason="taskset (util-linux) not installed")
def test_a_pinned_process_sees_one_core() -> None:
    code = "from control_plane.cores import usable_cores; print(usable_cores())"
    pinned = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", code],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert pinned.stdout.strip() == "1"
    free = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(free.stdout) == min(len(os.sched_getaffinity(0)), cores.quota_cores() or 10**6)
