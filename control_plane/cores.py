"""How many cores this process may really use.

``os.cpu_count()`` counts the machine's cores. A process pinned with ``taskset`` or a
cpuset (Kubernetes' static CPU manager, ``bench stack --split-cores``) or held to a CPU
quota (a container's ``cpus:`` or a pod's CPU limit) gets fewer: sizing lanes and thread
pools from the machine's count then runs, say, 16 single-threaded lanes on a 2-CPU quota,
each descheduled most of the time, with 16 batches' memory. Python 3.13's
``os.process_cpu_count()`` sees the affinity but not a quota; joblib's loky reads both but
is a dependency of its own for a dozen lines, so they are here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

# where a container sees its own cgroup (its namespace's root): v2, then v1
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CFS_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CFS_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def quota_cores(
    cpu_max: Path = CPU_MAX, cfs_quota: Path = CFS_QUOTA, cfs_period: Path = CFS_PERIOD
) -> int | None:
    """Cores' worth of the cgroup's CPU quota, rounded up (1.5 CPUs: 2); None without one."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota, period = cfs_quota.read_text().strip(), cfs_period.read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1"):
        return None
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return max(1, math.ceil(q / p)) if q > 0 and p > 0 else None


def usable_cores() -> int:
    """The cores this process may run on (affinity), no more than its CPU quota allows."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = quota_cores()
    return max(1, min(cores, quota) if quota else cores)
