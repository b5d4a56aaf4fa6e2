"""Shared bench helpers: machine description, result files, plots."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

# Where save() writes: the committed bench/results unless MTB_BENCH_RESULTS_DIR points
# elsewhere (tests run benchmarks as subprocesses and must not touch committed figures).
RESULTS = Path(os.environ.get("MTB_BENCH_RESULTS_DIR") or Path(__file__).parent / "results")
REPO = Path(__file__).resolve().parent.parent


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "os": platform.platform(),
        "python": sys.version.split()[0],
    }


def run_json(cmd: list[str], timeout: float = 600) -> dict:
    """Run a measuring child process that prints one JSON object as its last line."""
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def process_cpu_s(pid: int, tree: bool = False) -> float | None:
    """user+system CPU seconds of a process so far (None once it is gone); ``tree`` adds
    its children, running and reaped."""
    import psutil

    try:
        proc = psutil.Process(pid)
        t = proc.cpu_times()
        total = t.user + t.system
        if tree:
            total += t.children_user + t.children_system
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    c = child.cpu_times()
                    total += c.user + c.system
        return total
    except psutil.Error:
        return None


def save(section: str, report: dict, table: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{section}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{section}.md").write_text(table + "\n")
    print(table)
    print(f"wrote {path}")
    return path


def bar_plot(path: Path, labels: list[str], values: list[float], title: str, xlabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.35 * len(labels) + 1.5))
    ax.barh(labels, values, color=["#888" if "reference" in lbl else "#2a6" for lbl in labels])
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:,.0f}", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
