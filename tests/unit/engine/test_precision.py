"""control_plane.engine.precision: the choice, the cache, the measurement's shape (fake
models; the real one is tests/functional/L0_engine/test_precision_auto.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from control_plane.engine import precision as auto

META = {"model_version": "m-1", "precisions": {"int8": {}, "fp32": {}}}


class FakeModel:
    def __init__(self, name: str, calls: list[tuple[str, int]]) -> None:
        self.name, self.calls = name, calls

    def translate(self, texts: list[str]) -> list[str]:
        self.calls.append((self.name, len(texts)))
        return texts


@pytest.fixture(autouse=True)
def on_cpu(monkeypatch):
    monkeypatch.setattr(auto, "gpu_fp16", lambda precisions: False)


def test_choose_prefers_int8_unless_fp32_is_clearly_faster():
    assert auto.choose({"int8": 100.0, "fp32": 104.0}) == "int8"  # within TIE
    assert auto.choose({"int8": 100.0, "fp32": 140.0}) == "fp32"
    assert auto.choose({"int8": 140.0, "fp32": 100.0}) == "int8"
    assert auto.choose({"fp32": 1.0}) == "fp32"


def test_measure_warms_up_each_model_then_alternates_full_batches():
    calls: list[tuple[str, int]] = []
    speeds = auto.measure(lambda p: FakeModel(p, calls), ["int8", "fp32"], rounds=2)
    full = len(auto.SENTENCES) * 6
    assert calls == [("int8", 8), ("fp32", 8)] + [("int8", full), ("fp32", full)] * 2
    assert set(speeds) == {"int8", "fp32"} and all(v > 0 for v in speeds.values())


def test_resolve_measures_once_per_machine_and_model(tmp_path: Path, monkeypatch):
    measured: list[list[str]] = []

    def fake_measure(load, precisions, rounds=2):  # noqa: ANN001, ANN202
        measured.append(precisions)
        return {"int8": 100.0, "fp32": 150.0}

    monkeypatch.setattr(auto, "measure", fake_measure)
    monkeypatch.setattr(auto, "cpu_key", lambda: "cpu-a")
    assert auto.resolve(tmp_path, tmp_path / "m", META, load=None) == "fp32"
    assert auto.resolve(tmp_path, tmp_path / "m", META, load=None) == "fp32"
    assert len(measured) == 1  # the second start read the store's answer
    kept = json.loads((tmp_path / auto.CACHE_FILE).read_text())
    assert kept == {"cpu-a|m-1": {"precision": "fp32", "words_per_s": {"int8": 100, "fp32": 150}}}
    # another CPU (or ORT version, or core count) and another model version measure again
    monkeypatch.setattr(auto, "cpu_key", lambda: "cpu-b")
    auto.resolve(tmp_path, tmp_path / "m", META, load=None)
    auto.resolve(tmp_path, tmp_path / "m", {**META, "model_version": "m-2"}, load=None)
    assert len(measured) == 3
    assert len(json.loads((tmp_path / auto.CACHE_FILE).read_text())) == 3


def test_resolve_without_a_choice_or_on_a_gpu_measures_nothing(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(auto, "measure", lambda *a, **k: pytest.fail("measured"))
    only_fp32 = {"model_version": "m", "precisions": {"fp32": {}, "fp16": {}}}
    assert auto.resolve(tmp_path, tmp_path, only_fp32, load=None) == "fp32"
    monkeypatch.setattr(auto, "gpu_fp16", lambda precisions: "fp16" in precisions)
    assert auto.resolve(tmp_path, tmp_path, only_fp32, load=None) == "fp16"
    assert not (tmp_path / auto.CACHE_FILE).exists()


def test_a_read_only_or_damaged_store_still_answers(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(auto, "measure", lambda *a, **k: {"int8": 100.0, "fp32": 50.0})
    (tmp_path / auto.CACHE_FILE).write_text("{not json")
    assert auto.resolve(tmp_path, tmp_path, META, load=None) == "int8"
    missing = tmp_path / "gone"  # writing the answer fails: measured again next time
    assert auto.resolve(missing, tmp_path, META, load=None) == "int8"
    assert not missing.exists()


def test_processes_starting_together_measure_once_and_agree(tmp_path: Path, monkeypatch):
    """Two starts on one store at once (Triton's normal and urgent stubs): without the
    store's lock both measured, and near a tie they could load different precisions."""
    import threading
    import time

    answers = iter([{"int8": 100.0, "fp32": 150.0}, {"int8": 150.0, "fp32": 100.0}])
    measured: list[str] = []

    def slow_measure(load, precisions, rounds=2):  # noqa: ANN001, ANN202
        measured.append(threading.current_thread().name)
        time.sleep(0.3)  # the other start arrives while this one measures
        return next(answers)

    monkeypatch.setattr(auto, "measure", slow_measure)
    monkeypatch.setattr(auto, "cpu_key", lambda: "cpu-a")
    chosen: dict[str, str] = {}

    def start(name: str) -> None:
        chosen[name] = auto.resolve(tmp_path, tmp_path / "m", META, load=None)

    threads = [threading.Thread(target=start, args=(n,), name=n) for n in ("normal", "urgent")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(measured) == 1, measured
    assert chosen == {"normal": "fp32", "urgent": "fp32"}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
