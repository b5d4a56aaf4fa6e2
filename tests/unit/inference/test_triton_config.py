"""The translator's Triton configs: one generator, committed files in sync with it."""

from __future__ import annotations

import dataclasses
import re

import pytest

from control_plane.inference import triton_config as tc


def test_committed_configs_match_the_generator():
    assert tc.drift() == [], "run: python -m control_plane.inference.triton_config"


def test_cpu_config():
    text = tc.render(tc.CPU)
    assert 'backend: "python"' in text
    assert "kind: KIND_CPU" in text
    assert 'key: "precision"\n  value { string_value: "int8" }' in text
    assert 'key: "execution_provider"\n  value { string_value: "cpu" }' in text
    assert "priority_levels: 3" in text
    assert "default_priority_level: 3" in text
    assert "allow_ragged_batch: true" in text
    # three bounded per-level queues with timeouts
    policies = re.findall(r"priority_queue_policy \{\n    key: (\d)", text)
    assert policies == ["1", "2", "3"]
    assert len(re.findall(r"max_queue_size: \d+", text)) == 3
    assert len(re.findall(r"default_timeout_microseconds: \d+", text)) == 3


def test_gpu_config_from_the_same_source():
    cpu, gpu = tc.render(tc.CPU), tc.render(tc.GPU)
    assert "kind: KIND_GPU" in gpu and "KIND_CPU" not in gpu
    assert 'string_value: "fp16"' in gpu and 'string_value: "cuda"' in gpu
    # the protocol (inputs/outputs) is identical
    io = re.compile(r"input \[.*?\]\noutput \[.*?\]\n", re.S)
    assert io.search(cpu).group(0) == io.search(gpu).group(0)
    trt = tc.render(dataclasses.replace(tc.GPU, execution_provider="tensorrt", gpus=(0, 1)))
    assert 'string_value: "tensorrt"' in trt and "gpus: [ 0, 1 ]" in trt


def test_variants_and_validation():
    text = tc.render(dataclasses.replace(tc.CPU, instances=3, threads=1, model_dir="/m"))
    assert "count: 3" in text and 'string_value: "/m"' in text
    with pytest.raises(ValueError):
        tc.TranslatorConfig(kind="cpu", execution_provider="cuda")
    with pytest.raises(ValueError):
        tc.TranslatorConfig(max_batch_size=8, preferred_batch_sizes=(16,))
    with pytest.raises(ValueError):
        tc.TranslatorConfig(default_priority_level=4)
    with pytest.raises(ValueError, match="precision must be one of int8, fp32, fp16, auto"):
        tc.TranslatorConfig(precision="bf16")


def test_cli_check_and_stdout(tmp_path, capsys):
    assert tc.main(["--repository", str(tmp_path), "--check"]) == 1
    assert tc.main(["--repository", str(tmp_path)]) == 0
    assert tc.main(["--repository", str(tmp_path), "--check"]) == 0
    capsys.readouterr()
    assert tc.main(["--stdout", "--kind", "gpu", "--instances", "2"]) == 0
    assert "count: 2\n    kind: KIND_GPU" in capsys.readouterr().out
    assert tc.main(["--stdout", "--precision", "auto"]) == 0
    out = capsys.readouterr().out
    assert 'key: "precision"\n  value { string_value: "auto" }' in out and "KIND_CPU" in out


def test_urgent_model_same_protocol_own_name_and_link(tmp_path):
    """The urgent model (critical/high requests) is the translator's model.py under its own
    name: same inputs and outputs, its own process; the repository links its model.py."""
    main, urgent = tc.render(tc.CPU), tc.render(tc.URGENT_CPU)
    assert 'name: "translator_urgent"' in urgent and 'name: "translator"' in main
    io = re.compile(r"input \[.*?\]\noutput \[.*?\]\n", re.S)
    assert io.search(main).group(0) == io.search(urgent).group(0)
    assert 'name: "translator_urgent"' in tc.render(tc.URGENT_GPU)
    tc.write(tmp_path)
    link = tmp_path / "translator_urgent" / "1" / "model.py"
    assert link.resolve() == (tmp_path / "translator" / "1" / "model.py").resolve()
    assert tc.drift(tmp_path) == []
    link.unlink()
    link.write_text("# a copy drifts from the translator's model.py\n")
    assert tc.drift(tmp_path) == [link]
    repo = tc.copy_repository(tmp_path / "copy", tc.CPU, tc.URGENT_CPU)
    assert sorted(p.name for p in repo.iterdir()) == ["translator", "translator_urgent"]
    assert (repo / "translator_urgent" / "1" / "model.py").is_file()
