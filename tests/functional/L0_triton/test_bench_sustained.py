"""`python -m bench triton --parts sustained` (the worker's load on Triton against the
engine alone; it chose the CPU config's instances x lanes) runs end to end against the
session's tritonserver, small: two callers, calls of ~2,000 words, one 10k-word
document, one round. A subprocess, as a user runs it (tests do not import bench code),
writing to a temporary results folder. The figures are the benchmark's business."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.functional.L0_triton.test_triton import model_stats

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[3]


async def test_sustained_part_measures_both_paths(server, model_dir, tmp_path):
    env = {**os.environ, "MTB_MODEL_DIR": str(model_dir), "MTB_BENCH_RESULTS_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "bench", "triton", "--parts", "sustained", "--url", server.url]
    cmd += ["--sustained-words", "10000", "--sustained-callers", "2", "--call-words", "2000"]
    cmd += ["--rounds", "1"]
    before = await model_stats(server.url)
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    after = await model_stats(server.url)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    report = json.loads((tmp_path / "triton_sustained.json").read_text())
    out = report["sustained"]
    assert 9_000 <= out["words"] <= 11_000 and 4 <= out["calls"] <= 6
    assert out["callers"] == 2 and len(out["rounds"]["engine"]) == 1
    # the calls went through the server, cut into requests of 16 segments and batched
    requests, executions = after[0] - before[0], after[1] - before[1]
    assert requests >= 4 * out["calls"] and 0 < executions < requests
    for side in ("engine", "triton"):
        assert out[side]["words_per_min"] > 0
    # the engine's CPU is this process's; a server given by --url is not measured
    assert 0 < out["engine"]["cores_busy"] <= len(os.sched_getaffinity(0)) + 0.5
    assert out["triton"]["cores_busy"] is None
    assert out["triton_over_engine"] == round(
        out["triton"]["words_per_min"] / out["engine"]["words_per_min"], 3
    )
    table = (tmp_path / "triton_sustained.md").read_text()
    assert f"Triton / engine alone: {out['triton_over_engine']}x" in table
    assert f"| through Triton | {out['triton']['words_per_min']:,} |" in table
    assert report["urgent_model"] is False and report["request_segments"] == 16
