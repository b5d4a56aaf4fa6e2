"""Large-model sizing arithmetic: the KV-cache formula, the rates fitted on measured
points and the extrapolation to an architecture (docs/large-models.md quotes them)."""

from __future__ import annotations

import pytest

from control_plane.capacity.sizing import BYTES, extrapolate, fit_rates, kv_cache_bytes


def test_kv_cache_formula():
    # NLLB-200 3.3B: 24 decoder layers, d_model 2048; batch 64, 256 + 256 tokens, fp16
    a = {"decoder_layers": 24, "d_model": 2048}
    assert kv_cache_bytes(a, 64, 256, 256, 2) == 64 * 24 * 2 * 2048 * 512 * 2
    assert kv_cache_bytes(a, 1, 10, 0, 4) == 24 * 2 * 2048 * 10 * 4


def _point(emb: int, enc: int, dec: int, emb_bytes: dict[str, float]) -> dict:
    """A measured point whose files hold the layers at nominal width, the decoder twice,
    and the embedding at ``emb_bytes[precision]`` bytes per parameter."""
    precisions = {}
    for p, nbytes in BYTES.items():
        files = nbytes * (enc + 2 * dec) + emb_bytes[p] * emb
        precisions[p] = {
            "bytes": files,
            "peak_rss_mib": 1.5 * files / 2**20,
            "load_s": files / 1e9 * 3,
        }
    return {
        "embedding_params": emb,
        "encoder_layer_params": enc,
        "decoder_layer_params": dec,
        "precisions": precisions,
    }


def test_rates_recover_the_embedding_overhead_andextrapolate():
    emb_bytes = {"fp32": 20.0, "fp16": 10.0, "int8": 5.0}
    points = [
        _point(4_000_000, 1_500_000, 2_000_000, emb_bytes),
        _point(50_000_000, 40_000_000, 60_000_000, emb_bytes),
    ]
    rates = fit_rates(points)
    for p in BYTES:
        assert rates[p]["embedding_bytes_per_param"] == pytest.approx(emb_bytes[p])
        assert rates[p]["peak_rss_per_file_byte"] == pytest.approx(1.5)
        assert rates[p]["load_s_per_gb"] == pytest.approx(3.0)
    arch = {
        "parameters": 1_000_000_000,
        "expert_parameters": 0,
        "embedding_params": 200_000_000,
        "encoder_layer_params": 300_000_000,
        "decoder_layer_params": 500_000_000,
        "decoder_layers": 12,
        "d_model": 1024,
    }
    row = extrapolate(arch, rates)
    assert row["fp16"]["weights_gb"] == 2.0
    # 2 bytes x (0.3 + 2 x 0.5) B layers + 10 bytes x 0.2 B embedding = 4.6 GB
    assert row["fp16"]["onnx_files_gb_split_decoders"] == pytest.approx(4.6)
    assert row["int8"]["cpu_load_s"] == round((1.3 + 1.0) * 3)
