"""``python -m bench SECTION --help`` is the section's own help, ``python -m bench --help``
the list of sections (run as subprocesses: tests do not import bench code)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def bench(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_section_help_is_the_sections_own():
    out = bench("stack", "--help")
    assert out.returncode == 0, out.stderr
    assert "usage: python -m bench stack" in out.stdout and "--split-cores" in out.stdout


def test_bench_help_lists_the_sections():
    out = bench("--help")
    assert out.returncode == 0, out.stderr
    assert "usage: python -m bench" in out.stdout and "stack" in out.stdout
    assert "--split-cores" not in out.stdout


def test_bench_gpu_refuses_a_malformed_triton_config_before_measuring():
    for bad in ("1x", "x4", "1x4o0", "0x4", "1x4o", "fast"):
        out = bench("gpu", "--dry-run", "--triton-configs", f"1x4,{bad}")
        assert out.returncode == 2, (bad, out.stdout[-500:], out.stderr[-500:])
        assert "INSTANCESxLANES[oOVERLAP]" in out.stderr and repr(bad) in out.stderr
