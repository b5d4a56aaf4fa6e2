"""Measured words/min per instance kind from bench results (control_plane.capacity.rates)."""

from __future__ import annotations

import json
import logging

import pytest

from control_plane.capacity.rates import (
    FALLBACK_WPS,
    GPU_ESTIMATE_BASIS,
    RESULTS_DIR,
    cpu_candidates,
    gpu_figure,
    measured_kinds,
)
from control_plane.settings import Settings

MACHINE = {"cpu": "Test CPU", "cores": 2}


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_repo_results_cpu_is_the_sustained_stack_figure():
    """The committed bench/results: cpu is stack.json's stack throughput as recorded there
    (whatever a re-run made it), measured; the GPU stays an estimate without gpu.json."""
    stack = json.loads((RESULTS_DIR / "stack.json").read_text())
    kinds = measured_kinds(RESULTS_DIR, Settings())
    assert kinds["cpu"].words_per_minute == stack["stack_words_per_min"]
    assert kinds["cpu"].measured and kinds["cpu"].source.startswith("stack.json: stack_words")
    assert kinds["cpu"].price_per_hour == 2.05 and not kinds["cpu"].gpu
    if not (RESULTS_DIR / "gpu" / "gpu.json").exists():
        assert not kinds["gpu"].measured and kinds["gpu"].source == GPU_ESTIMATE_BASIS


def test_preference_order_and_fallbacks(tmp_path):
    write(tmp_path / "service.json", {"machine": MACHINE, "document": {"words_per_min": 1000}})
    write(tmp_path / "latency.json", {"machine": MACHINE, "overhead": {"off_words_per_min": 800}})
    found = cpu_candidates(tmp_path)
    assert [f.words_per_minute for f in found] == [800, 1000]  # latency.json before service
    assert measured_kinds(tmp_path, Settings())["cpu"].words_per_minute == 800
    write(tmp_path / "stack.json", {"machine": MACHINE, "stack_words_per_min": 500,
                                     "engine_alone": {"words_per_min": 900}})  # fmt: skip
    found = cpu_candidates(tmp_path)
    assert [f.words_per_minute for f in found] == [500, 800, 1000, 900]
    assert found[0].cores == 2 and "2 cores, Test CPU" in found[0].source


def test_no_results_is_an_estimate_from_the_seed_throughput(tmp_path):
    kinds = measured_kinds(tmp_path, Settings(throughput_wps=10.0))
    assert kinds["cpu"].words_per_minute == 600.0 and not kinds["cpu"].measured
    assert kinds["cpu"].source.startswith("estimate: no CPU figure")
    unset = measured_kinds(tmp_path, Settings(throughput_wps=0.0))["cpu"]
    assert unset.words_per_minute == FALLBACK_WPS * 60 and not unset.measured


def test_unreadable_or_odd_files_are_skipped(tmp_path, caplog):
    (tmp_path / "stack.json").write_text("{not json")
    write(tmp_path / "latency.json", {"overhead": {"off_words_per_min": True}})  # not a number
    write(tmp_path / "service.json", {"document": {"words_per_min": -5}})
    with caplog.at_level(logging.WARNING):
        assert cpu_candidates(tmp_path) == []
    assert "stack.json unreadable" in caplog.text


def test_prices_and_spot_from_settings_env(tmp_path):
    s = Settings.from_env({"MTB_PRICE_GPU_PER_HOUR": "2.5", "MTB_SPOT_DISCOUNT": "0.7",
                           "MTB_PRICE_CPU_PER_HOUR": "0.4"})  # fmt: skip
    kinds = measured_kinds(tmp_path, s)
    assert kinds["cpu"].price_per_hour == 0.4
    assert kinds["gpu"].price_per_hour == 2.5
    assert kinds["gpu-spot"].price_per_hour == pytest.approx(0.75)
    # a spot instance is the same machine: same speed, same provenance
    assert kinds["gpu-spot"].words_per_minute == kinds["gpu"].words_per_minute
    assert kinds["gpu-spot"].measured == kinds["gpu"].measured


def test_default_results_dir_is_the_setting(tmp_path):
    write(tmp_path / "stack.json", {"machine": MACHINE, "stack_words_per_min": 321})
    kinds = measured_kinds(settings=Settings(cost_results_dir=tmp_path))
    assert kinds["cpu"].words_per_minute == 321


def test_cpu_instance_of_another_size_is_scaled_and_marked_estimate(tmp_path):
    write(tmp_path / "stack.json", {"machine": MACHINE, "stack_words_per_min": 1000})
    cpu = measured_kinds(tmp_path, Settings(cost_cpu_cores=48))["cpu"]
    assert cpu.words_per_minute == 24_000 and not cpu.measured
    assert cpu.source.startswith("estimate: scaled linearly from 2 to 48 cores")
    same = measured_kinds(tmp_path, Settings(cost_cpu_cores=2))["cpu"]
    assert same.words_per_minute == 1000 and same.measured


def test_gpu_estimate_until_gpu_json(tmp_path):
    kinds = measured_kinds(tmp_path, Settings(cost_gpu_words_per_minute_estimate=123.0))
    assert kinds["gpu"].words_per_minute == 123.0 and not kinds["gpu"].measured
    assert gpu_figure(tmp_path) is None


def test_gpu_json_from_bench_gpu_summary(tmp_path):
    """The shape bench/gpu.py writes: Triton's best is a replica's speed; a dry run (CPU
    figures) is never taken for the GPU's."""
    report = {
        "dry_run": False,
        "device": {"name": "NVIDIA H200"},
        "summary": {"engine_best_words_per_min": 3_000_000, "ceiling_best_words_per_min": 9e6,
                    "triton_best_words_per_min": 2_700_000},
        "parts": {"ceiling": {"points": [{"batch": 1024, "words_per_min": 9e6}]}},
    }  # fmt: skip
    write(tmp_path / "gpu" / "gpu.json", report)
    gpu = measured_kinds(tmp_path, Settings())["gpu"]
    assert gpu.words_per_minute == 2_700_000 and gpu.measured
    assert "summary.triton_best_words_per_min" in gpu.source and "NVIDIA H200" in gpu.source
    del report["summary"]["triton_best_words_per_min"]
    write(tmp_path / "gpu" / "gpu.json", report)
    assert gpu_figure(tmp_path).words_per_minute == 3_000_000
    write(tmp_path / "gpu" / "gpu.json", {**report, "dry_run": True})
    assert gpu_figure(tmp_path) is None
    assert not measured_kinds(tmp_path, Settings())["gpu-spot"].measured


def test_gpu_json_triton_figure_wins_and_the_ceiling_is_never_ours(tmp_path):
    write(
        tmp_path / "gpu" / "gpu.json",
        {
            "gpu": {"name": "NVIDIA H200"},
            "engine": {"cuda": {"1024": {"words_per_min": 3_000_000}}},
            "triton": {"clients": {"256": {"words_per_min": 2_500_000},
                                   "8": {"words_per_min": 400_000}}},
            "pytorch_ceiling": {"words_per_min": 9_300_000},
            "cpu_baseline": {"words_per_min": 150_000},
        },
    )  # fmt: skip
    gpu = measured_kinds(tmp_path, Settings())["gpu"]
    assert gpu.words_per_minute == 2_500_000 and gpu.measured
    assert "triton.clients.256.words_per_min" in gpu.source and "NVIDIA H200" in gpu.source
    write(tmp_path / "gpu" / "gpu.json", {"engine": {"cuda": {"words_per_min": 3_000_000}},
                                          "torch": {"words_per_min": 9e6}})  # fmt: skip
    assert gpu_figure(tmp_path).words_per_minute == 3_000_000
    write(tmp_path / "gpu" / "gpu.json", {"replica_words_per_min": 1_234_567,
                                          "triton": {"words_per_min": 9e6}})  # fmt: skip
    assert gpu_figure(tmp_path).words_per_minute == 1_234_567
