"""CPU placement and accounting of process trees: benchmarks that run a deployment's
processes on one machine pin a server (and its children) to cores of its own, as if it ran
on a node of its own, and split a server's CPU time per child process."""

from __future__ import annotations

import contextlib
import os


def split_cores() -> tuple[set[int], set[int]]:
    """(the rest, the upper half) of this process's cores: a server that should run as
    on a node of its own gets the upper half (2 cores: {0} | {1})."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("splitting the cores needs at least 2 of them")
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


def tree_cpu_s(pid: int, label=None) -> dict[str, float]:
    """user+system CPU seconds so far of a process and each live descendant, keyed by
    ``label(cmdline)`` (default: the process name); a server's own share and its workers'
    (Triton's model stubs) apart. Children already reaped are not listed."""
    import psutil

    used: dict[str, float] = {}
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return used
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            key = (label(proc.cmdline()) if label else None) or proc.name()
            used[key] = used.get(key, 0.0) + t.user + t.system
    return used


def pin_tree(pid: int, cpus: set[int]) -> int:
    """Pin every thread of ``pid`` and of its descendants to ``cpus``; returns how many
    threads were moved. Every thread, because Linux's sched_setaffinity(pid) moves only the
    thread whose id is ``pid`` (psutil's cpu_affinity too); threads and processes started
    later inherit their creator's CPUs, so a server pinned once stays pinned."""
    import psutil

    moved = 0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            for thread in proc.threads():
                with contextlib.suppress(OSError):  # a thread that just ended
                    os.sched_setaffinity(thread.id, cpus)
                    moved += 1
    return moved
