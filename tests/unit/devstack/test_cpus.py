"""devstack.cpus (the core split, pinning a whole process tree, CPU per child process) and
devstack.triton.stub_instance: what ``bench stack --split-cores`` runs on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.config import REPO_ROOT
from devstack.cpus import pin_tree, split_cores, tree_cpu_s
from devstack.triton import stub_instance

# a child that starts a thread, then a grandchild, and waits: threads and processes the
# pinning must reach (Linux moves only the thread whose id it is given)
_TREE = """
import subprocess, sys, threading, time
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print("ready", flush=True)
time.sleep(60)
"""


def _tids(pid: int) -> list[int]:
    return [int(t) for t in os.listdir(f"/proc/{pid}/task")]


def test_split_cores_gives_the_server_the_upper_half(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert split_cores() == ({0}, {1})
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {4, 5, 6, 7, 8})
    assert split_cores() == ({4, 5}, {6, 7, 8})
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    with pytest.raises(SystemExit, match="at least 2"):
        split_cores()


@pytest.mark.parametrize(
    "argv", [["--split-cores"], ["--split-cores", "--inference", "triton", "--triton-url", "h:1"]]
)
def test_bench_stack_splits_only_a_triton_it_starts(argv):
    """Refused before anything starts: local inference has nothing to split off, and a
    Triton at --triton-url is not ours to pin."""
    out = subprocess.run(
        [sys.executable, "-m", "bench", "stack", *argv],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 2 and "--split-cores needs --inference triton" in out.stderr


def test_pin_tree_reaches_every_thread_and_descendant():
    one = {min(os.sched_getaffinity(0))}
    proc = subprocess.Popen([sys.executable, "-c", _TREE], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        import psutil

        (grandchild,) = psutil.Process(proc.pid).children()
        threads = _tids(proc.pid)
        assert len(threads) >= 2  # the main thread and the sleeping one
        moved = pin_tree(proc.pid, one)
        assert moved >= len(threads) + 1
        for tid in threads:
            assert os.sched_getaffinity(tid) == one
        assert os.sched_getaffinity(grandchild.pid) == one
        everything = os.sched_getaffinity(0)
        pin_tree(proc.pid, everything)
        assert all(os.sched_getaffinity(tid) == everything for tid in threads)
    finally:
        for p in psutil.Process(proc.pid).children(recursive=True):
            p.kill()
        proc.kill()
        proc.wait()


def test_pin_tree_of_a_process_gone_moves_nothing():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert pin_tree(proc.pid, {0}) == 0


def test_tree_cpu_s_names_triton_stubs_by_instance(tmp_path: Path):
    stub = tmp_path / "triton_python_backend_stub"  # a python under the stub's name
    stub.symlink_to(sys.executable)
    # the shape of a real stub's command line: model.py, shm region, ..., instance name
    spin = ["-c", "while True: pass"]
    args = [str(stub), *spin, "/m/translator/1/model.py", "shm", "translator_urgent_0_0", "CPU"]
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child = subprocess.Popen(args)
    try:
        time.sleep(0.5)
        used = tree_cpu_s(child.pid, stub_instance)
        assert list(used) == ["translator_urgent_0_0"]
        assert used["translator_urgent_0_0"] > 0.1  # it spins
        (name,) = tree_cpu_s(parent.pid, stub_instance)
        assert name.startswith("python")  # not a stub: its process name
    finally:
        for p in (child, parent):
            p.kill()
            p.wait()
    assert stub_instance(["/opt/tritonserver/bin/tritonserver", "--x"]) is None
    assert stub_instance(["/b/triton_python_backend_stub", "m.py"]) == "stub"
    assert stub_instance([]) is None
