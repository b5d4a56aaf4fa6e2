"""Sizing arithmetic for large models (docs/large-models.md): memory, files and load time
per precision extrapolated from small models measured by ``python -m bench large_models``.

Here, not in bench/, because the formulas are the plan's content and tests check them;
bench only measures the points they are fitted on."""

from __future__ import annotations

BYTES = {"fp32": 4, "fp16": 2, "int8": 1}


def kv_cache_bytes(a: dict, batch: int, src_len: int, tgt_len: int, nbytes: int) -> int:
    """Decoder KV cache: self-attention K,V over the target so far, cross-attention K,V over
    the source, per decoder layer: batch x layers x 2 x d_model x (tgt + src) x bytes."""
    return batch * a["decoder_layers"] * 2 * a["d_model"] * (tgt_len + src_len) * nbytes


def _fit(points: list[dict], key: str, per: str) -> float:
    """Least-squares slope through the origin of ``key`` over ``per`` (the growth rate)."""
    num = sum(p[key] * p[per] for p in points)
    den = sum(p[per] ** 2 for p in points)
    return num / den if den else 0.0


def _layers(p: dict) -> int:
    """Layer parameters as the split-decoder export stores them: the encoder once, the
    decoder twice (decoder_model and decoder_with_past_model each hold a copy)."""
    return p["encoder_layer_params"] + 2 * p["decoder_layer_params"]


def fit_rates(points: list[dict]) -> dict:
    """Per precision, from the small models: bytes per embedding parameter in the files
    (after the layers at their nominal width; the shared embedding is stored once per graph
    and int8's dynamic quantization leaves its Gather in fp32), peak RSS per file byte and
    load seconds per GB of files (least squares through the origin)."""
    rates = {}
    for precision, nbytes in BYTES.items():
        rows = []
        for p in points:
            q = p["precisions"][precision]
            rows.append(
                {
                    "emb_bpp": (q["bytes"] - nbytes * _layers(p)) / p["embedding_params"],
                    "bytes": q["bytes"],
                    "rss": q["peak_rss_mib"] * 2**20,
                    "load_s": q["load_s"],
                }
            )
        rates[precision] = {
            "embedding_bytes_per_param": round(sum(r["emb_bpp"] for r in rows) / len(rows), 2),
            "peak_rss_per_file_byte": round(_fit(rows, "rss", "bytes"), 2),
            "load_s_per_gb": round(_fit(rows, "load_s", "bytes") * 1e9, 2),
        }
    return rates


def extrapolate(a: dict, rates: dict) -> dict:
    """A published architecture at each precision: weights (parameters x bytes), the files
    our split-decoder export would write (measured embedding overhead), CPU RSS and load
    time at the measured rates, and the KV cache."""
    row = {
        k: a[k]
        for k in (
            "parameters",
            "expert_parameters",
            "embedding_params",
            "encoder_layer_params",
            "decoder_layer_params",
        )
    }
    for precision, nbytes in BYTES.items():
        r = rates[precision]
        files = nbytes * _layers(a) + r["embedding_bytes_per_param"] * a["embedding_params"]
        row[precision] = {
            "weights_gb": round(a["parameters"] * nbytes / 1e9, 1),
            "onnx_files_gb_split_decoders": round(files / 1e9, 1),
            "cpu_peak_rss_gb": round(files * r["peak_rss_per_file_byte"] / 1e9, 1),
            "cpu_load_s": round(files / 1e9 * r["load_s_per_gb"]),
        }
    # activations (and so the KV cache) stay fp16 on GPU / fp32 on CPU whatever the
    # weights' precision (int8 is weight quantization)
    row["kv_cache_gb_b64_s256_t256"] = {
        act: round(kv_cache_bytes(a, 64, 256, 256, BYTES[act]) / 1e9, 2) for act in ("fp16", "fp32")
    }
    return row
