"""The device-resident decoder loop (control_plane.engine.device_loop) on the real models,
run on the CPU execution provider with IOBinding: it must give the host loop's tokens.

Sets: the gettext eval sets of both pairs (500 + 500 sentences). int8: all of them;
fp32: the first 100 of each (the full set adds ~20 s on a 2-core machine for no other
code path); buckets up to 1024: 256 sentences in one batch; fp16 (slow on CPU) against
fp32: 48 sentences; the fixed-shape (CUDA graph) variant, uncaptured: 100 per pair.
"""

from __future__ import annotations

import numpy as np
import pytest

from control_plane.engine.bergamot_engine import MAX_SOURCE_TOKENS, BergamotModel
from control_plane.engine.buckets import plan_batches
from control_plane.engine.device_loop import DeviceLoop, StaticDeviceLoop
from evaluation.sets import gettext_set

PAIRS = ("en-pt", "pt-en")
SUBSET = {"int8": None, "fp32": 100}


def sources(model: BergamotModel, pair: str, limit: int | None = None) -> list[np.ndarray]:
    ids = [np.array(model.encode(s)) for s, _ in gettext_set(pair)[:limit]]
    assert all(len(i) <= MAX_SOURCE_TOKENS for i in ids)
    return ids


class CountingGathers:
    """Counts the device loop's compactions (its gather runs on the compact session)."""

    def __init__(self, loop: DeviceLoop, monkeypatch) -> None:
        self.compactions = 0
        gather = loop._gather

        def counted(session, rows, values):
            if session is loop._compact:
                self.compactions += 1
            return gather(session, rows, values)

        monkeypatch.setattr(loop, "_gather", counted)


def assert_stats_count_the_steps(model: BergamotModel, srcs: list[np.ndarray], outputs) -> dict:
    """LoopStats against the outputs: a row is live for each token it produced, plus the
    step that produced its EOS (a row cut at its length limit produced none)."""
    s = model.loop_stats.snapshot()
    limits = model._limits(srcs)
    live = sum(len(out) + (len(out) < lim) for (out, _), lim in zip(outputs, limits, strict=True))
    assert s["rows"] == len(srcs) and s["row_steps"] == live
    assert s["steps"] > 0 and s["slot_steps"] >= s["row_steps"]
    assert 0 < s["live_share"] <= 1 and s["steps_per_batch"] == round(s["steps"] / s["batches"], 1)
    parts = s["encode_s"] + s["step_s"] + s["sync_s"] + s["compact_s"] + s["prepare_s"]
    assert min(s["encode_s"], s["step_s"], s["sync_s"], s["prepare_s"]) > 0
    assert parts == pytest.approx(s["total_s"], abs=1e-3)
    return s


@pytest.fixture(scope="module")
def host_outputs(model_dir):
    """(pair, precision) -> the host loop's (ids, log-prob) per sentence."""
    out = {}
    for precision, limit in SUBSET.items():
        for pair in PAIRS:
            host = BergamotModel(model_dir / f"bergamot-{pair}", precision, decoder_loop="host")
            out[pair, precision] = host.translate_ids(sources(host, pair, limit))
    return out


@pytest.mark.parametrize("precision", ["int8", "fp32"])
@pytest.mark.parametrize("pair", PAIRS)
def test_device_loop_gives_the_host_loops_tokens(
    model_dir, host_outputs, precision, pair, monkeypatch
):
    # the shortlist graph too (on a GPU by default; asked for here on the CPU EP)
    model = BergamotModel(
        model_dir / f"bergamot-{pair}", precision, decoder_loop="device", device_shortlist=True
    )
    assert model.decoder_loop == "device" and model.max_batch == 32
    assert model._device.shortlist is not None
    gathers = CountingGathers(model._device, monkeypatch)
    srcs = sources(model, pair, SUBSET[precision])
    device = model.translate_ids(srcs)
    stats = assert_stats_count_the_steps(model, srcs, device)
    assert stats["compactions"] == gathers.compactions
    plan = plan_batches([len(x) for x in srcs], model.max_batch, model.batch_tokens)
    assert stats["batches"] == len(plan)
    host = host_outputs[pair, precision]
    assert [ids for ids, _ in device] == [ids for ids, _ in host]
    # the same float32 log-probabilities summed in the same order
    np.testing.assert_allclose([lp for _, lp in device], [lp for _, lp in host], atol=1e-5)
    # batches of 32 shrink to 16, 8, ... as sentences finish: the compaction path ran
    assert gathers.compactions > 3 * (len(device) // 32)


def test_buckets_up_to_1024_change_nothing(model_dir, host_outputs, monkeypatch):
    """256 sentences in one batch (bucket 256), compacted down to 1 row."""
    model = BergamotModel(
        model_dir / "bergamot-en-pt",
        "int8",
        decoder_loop="device",
        max_batch=1024,
        device_shortlist=True,
    )
    assert model.max_batch == 1024
    seen = []
    greedy = model._device.greedy
    monkeypatch.setattr(model._device, "greedy", lambda *a: seen.append(len(a[-1])) or greedy(*a))
    # 256 sentences of at most 128 tokens: one batch within the token budget (32,768)
    every = sources(model, "en-pt")
    picked = [i for i, ids in enumerate(every) if len(ids) <= 128][:256]
    device = model.translate_ids([every[i] for i in picked])
    assert seen == [256]
    host = [host_outputs["en-pt", "int8"][i] for i in picked]
    assert [ids for ids, _ in device] == [ids for ids, _ in host]
    # int8 MatMulNBits takes another kernel for large batches: log-probs move a little
    np.testing.assert_allclose([lp for _, lp in device], [lp for _, lp in host], atol=0.1)


def test_fp16_device_loop_agrees_with_fp32(model_dir, host_outputs):
    model = BergamotModel(model_dir / "bergamot-en-pt", "fp16", decoder_loop="device")
    device = model.translate_ids(sources(model, "en-pt", 48))
    host = host_outputs["en-pt", "fp32"][:48]
    same = sum(d[0] == h[0] for d, h in zip(device, host, strict=True))
    assert same >= 47, f"fp16 gave fp32's tokens for {same} of 48 sentences"
    np.testing.assert_allclose([lp for _, lp in device], [lp for _, lp in host], atol=0.1)


def test_auto_is_host_on_cpu_and_translate_uses_the_device_loop(model_dir):
    folder = model_dir / "bergamot-en-pt"
    assert BergamotModel(folder, "int8").decoder_loop == "host"
    device = BergamotModel(folder, "int8", decoder_loop="device")
    text = ["Save the file before closing.", "", "Cancel"]
    assert [t.text for t in device.translate(text)] == [
        t.text for t in BergamotModel(folder, "int8", decoder_loop="host").translate(text)
    ]
    with pytest.raises(ValueError, match="decoder_loop"):
        BergamotModel(folder, "int8", decoder_loop="gpu")


@pytest.mark.parametrize(("pair", "precision"), [("en-pt", "fp32"), ("pt-en", "int8")])
def test_fixed_shape_loop_gives_the_host_loops_tokens(model_dir, host_outputs, pair, precision):
    """The CUDA-graph variant (fixed buffers, sources padded to 256 tokens, columns to a
    power of two) runs uncaptured on CPU EP: the same tokens, buffers reused by batches."""
    model = BergamotModel(
        model_dir / f"bergamot-{pair}", precision, decoder_loop="device", cuda_graph=True
    )
    loop = model._device
    assert isinstance(loop, StaticDeviceLoop) and not loop.cuda_graph  # no capture on CPU
    srcs = sources(model, pair, 100)
    device = model.translate_ids(srcs)
    assert assert_stats_count_the_steps(model, srcs, device)["compactions"] > 0
    host = host_outputs[pair, precision][:100]
    assert [ids for ids, _ in device] == [ids for ids, _ in host]
    # padded sources and columns add zero terms to sums that may then round differently;
    # int8 quantizes activations per row block, which can turn such a last-bit difference
    # into one quantization step
    tolerance = 1e-4 if precision == "fp32" else 0.1
    np.testing.assert_allclose([lp for _, lp in device], [lp for _, lp in host], atol=tolerance)
    assert set(loop._rows) <= {1, 2, 4, 8, 16, 32}  # one buffer set per bucket, reused
    assert all(w in (1024, 2048, 4096, 8192, 16384) for _, w in loop._runs)


def test_a_store_exported_before_decoder_step_says_so(model_dir, tmp_path):
    """A folder of format 2 (no decoder_step graphs) keeps working on the host loop and
    names the fix when the device loop is asked for."""
    import json

    src = model_dir / "bergamot-en-pt"
    old = tmp_path / "bergamot-en-pt"
    old.mkdir()
    for f in src.iterdir():
        (old / f.name).symlink_to(f)
    meta = json.loads((src / "metadata.json").read_text())
    for files in meta["precisions"].values():
        files.pop("decoder_step")
    (old / "metadata.json").unlink()
    (old / "metadata.json").write_text(json.dumps(meta))
    assert BergamotModel(old, "int8").translate(["Cancel"])[0].text
    with pytest.raises(ValueError, match="no decoder_step graph; re-export"):
        BergamotModel(old, "int8", decoder_loop="device")


def test_settings_choose_the_loop(model_dir, monkeypatch):
    """MTB_DECODER_LOOP / MTB_CUDA_GRAPH reach every Bergamot model of the engine store."""
    from control_plane.engine import open_engine
    from control_plane.settings import Settings

    monkeypatch.setenv("MTB_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("MTB_DECODER_LOOP", "device")
    monkeypatch.setenv("MTB_CUDA_GRAPH", "1")
    model = open_engine(Settings.from_env()).model("pt", "en")
    assert model.decoder_loop == "device" and isinstance(model._device, StaticDeviceLoop)
    monkeypatch.setenv("MTB_DECODER_LOOP", "host")
    assert open_engine(Settings.from_env()).model("pt", "en")._device is None
