"""Large models (NLLB-200 / NLLB-MoE, the design's 60-100 GB class): what we can measure here,
and the formula that extrapolates it (docs/large-models.md).

    python -m bench large_models [--sizes xs,s,m] [--no-triton]
    python -m bench.large_models ...               # the same

No hub download: models of NLLB's architecture (M2M100ForConditionalGeneration, NLLB
tokenizer) are built here from a config at small sizes with random weights, exported by the
project's own HF path (export/hf.py: optimum, int8 dynamic quantization, fp16 conversion),
and measured per precision: export time, file size, load time into ONNX Runtime (CPU EP)
and peak RSS of the loading process. The real NLLB checkpoints' parameter counts are
computed exactly from their architectures on PyTorch's meta device (no memory, no
download); bytes/parameter, RSS/parameter and load GB/s measured on the small models give
the extrapolation. Each measurement runs in a child process, so RSS is its own.

``--triton`` part (default on): load time of one language pair's model through Triton's
repository API in explicit mode (control_plane/inference/lifecycle.py), for the generated
per-pair directory, the all-pairs ``translator`` and a load with a config override and the
model file sent in the request.

Results: bench/results/large_models.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, machine, run_json, save
from control_plane.capacity.sizing import BYTES, extrapolate, fit_rates

# Small models of NLLB's shape (ffn = 4 x d_model as in NLLB-600M; 64-dim heads).
SIZES = {
    "xs": {"d_model": 256, "layers": 2, "vocab": 16_384},
    "s": {"d_model": 512, "layers": 4, "vocab": 32_768},
    "m": {"d_model": 768, "layers": 6, "vocab": 65_536},
}

# The published architectures (config.json of facebook/nllb-200-* and nllb-moe-54b), written
# here from their model cards, not downloaded.
NLLB = {
    "nllb-200-distilled-600M": dict(
        d_model=1024, encoder_layers=12, decoder_layers=12, ffn=4096, heads=16
    ),
    "nllb-200-1.3B": dict(d_model=1024, encoder_layers=24, decoder_layers=24, ffn=8192, heads=16),
    "nllb-200-3.3B": dict(d_model=2048, encoder_layers=24, decoder_layers=24, ffn=8192, heads=32),
    "nllb-moe-54b": dict(
        d_model=2048,
        encoder_layers=24,
        decoder_layers=24,
        ffn=8192,
        heads=16,
        experts=128,
        sparse_step=4,
    ),
}
NLLB_VOCAB = 256_206
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please restart the application after installing the update.",
    "The meeting has been moved to Thursday afternoon.",
    "Where is the station? It is three kilometres away.",
    "Large models need more memory than small ones.",
]


# ------------------------------------------------------------------ children


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_build(folder: Path, size: str) -> dict:
    """A random-weight NLLB-architecture model with an NLLB tokenizer, saved to ``folder``."""
    import sentencepiece as spm
    import torch
    import transformers

    dims = SIZES[size]
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 4),
        model_writer=buf,
        vocab_size=60,
        model_type="unigram",
        character_coverage=1.0,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    spm_path = folder / "sentencepiece.bpe.model"
    spm_path.write_bytes(buf.getvalue())
    tok = transformers.NllbTokenizer(vocab_file=str(spm_path), src_lang="eng_Latn")
    tok.tgt_lang = "por_Latn"
    d = dims["d_model"]
    config = transformers.M2M100Config(
        vocab_size=max(dims["vocab"], len(tok)),
        d_model=d,
        encoder_layers=dims["layers"],
        decoder_layers=dims["layers"],
        encoder_attention_heads=d // 64,
        decoder_attention_heads=d // 64,
        encoder_ffn_dim=4 * d,
        decoder_ffn_dim=4 * d,
        max_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
        bos_token_id=0,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.eos_token_id,
        scale_embedding=True,
        dropout=0.0,
    )
    torch.manual_seed(0)
    model = transformers.M2M100ForConditionalGeneration(config)
    model.generation_config.max_length = 32
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return {"parameters": sum(p.numel() for p in model.parameters()), **_split(model)}


def _split(model) -> dict:  # noqa: ANN001
    """Parameters by part: shared embedding, encoder layers, decoder layers."""
    core = model.model
    emb = core.shared.weight.numel()
    enc = sum(p.numel() for p in core.encoder.layers.parameters())
    dec = sum(p.numel() for p in core.decoder.layers.parameters())
    return {"embedding_params": emb, "encoder_layer_params": enc, "decoder_layer_params": dec}


def child_export(folder: Path, out: Path) -> dict:
    from export.hf import export_hf

    t0 = time.monotonic()
    export_hf(folder, out, precisions=("fp32", "int8", "fp16"), force=True)
    meta = json.loads((out / "metadata.json").read_text())
    return {
        "export_s": round(time.monotonic() - t0, 2),
        "peak_rss_mib": round(_peak_mib()),
        "meta": meta,
    }


def child_load(out: Path, precision: str) -> dict:
    """Load one precision's graphs into ONNX Runtime sessions (CPU EP, what model.py does)."""
    import numpy as np
    import onnxruntime as ort

    meta = json.loads((out / "metadata.json").read_text())
    files = meta["precisions"][precision]
    base_rss = _rss_mib()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    t0 = time.monotonic()
    sessions = {role: ort.InferenceSession(str(out / name), opts) for role, name in files.items()}
    load_s = time.monotonic() - t0
    after = _rss_mib()
    enc = sessions["encoder"]
    ids = np.full((1, 16), 5, dtype=np.int64)
    t1 = time.monotonic()
    enc.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
    return {
        "load_s": round(load_s, 3),
        "rss_after_load_mib": round(after - base_rss, 1),
        "peak_rss_mib": round(_peak_mib() - base_rss, 1),
        "encoder_first_run_s": round(time.monotonic() - t1, 3),
    }


def _files_bytes(out: Path, names: dict[str, str]) -> int:
    total = 0
    for name in names.values():
        for f in out.iterdir():
            if f.name == name or f.name.startswith(name + "."):  # graph + external data
                total += f.stat().st_size
    return total


# ------------------------------------------------------------------ the real architectures


def nllb_parameters() -> dict[str, dict]:
    """Exact parameter counts of the published NLLB architectures (meta device: no memory)."""
    import torch
    import transformers

    counts = {}
    for name, a in NLLB.items():
        common = dict(
            vocab_size=NLLB_VOCAB,
            d_model=a["d_model"],
            encoder_layers=a["encoder_layers"],
            decoder_layers=a["decoder_layers"],
            encoder_ffn_dim=a["ffn"],
            decoder_ffn_dim=a["ffn"],
            encoder_attention_heads=a["heads"],
            decoder_attention_heads=a["heads"],
            max_position_embeddings=1024,
        )
        with torch.device("meta"):
            if "experts" in a:
                cfg = transformers.NllbMoeConfig(
                    **common,
                    num_experts=a["experts"],
                    encoder_sparse_step=a["sparse_step"],
                    decoder_sparse_step=a["sparse_step"],
                )
                model = transformers.NllbMoeForConditionalGeneration(cfg)
            else:
                model = transformers.M2M100ForConditionalGeneration(
                    transformers.M2M100Config(**common)
                )
        params = sum(p.numel() for p in model.parameters())
        experts = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
        counts[name] = {**a, "parameters": params, "expert_parameters": experts, **_split(model)}
        del model
    return counts


# ------------------------------------------------------------------ Triton load times


async def _triton_loads(model_dir: Path, repeats: int) -> dict:
    import tritonclient.grpc.aio as grpcclient
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    import devstack
    from control_plane.inference.lifecycle import render_pair, write_repository
    from control_plane.inference.triton_config import CPU, MODEL_REPOSITORY, copy_repository

    cfg = dataclasses.replace(CPU, model_dir=str(model_dir))
    work = Path(tempfile.mkdtemp(prefix="mtb-lifecycle-bench-"))
    repo = work / "repo"
    write_repository(repo, [("en", "pt"), ("pt", "en")], cfg)
    copy_repository(repo, cfg)  # the all-pairs translator next to them
    server = devstack.start_triton(repo, workdir=work / "triton", model_control="explicit")
    client = grpcclient.InferenceServerClient(server.url)
    model_py = (MODEL_REPOSITORY / "translator" / "1" / "model.py").read_bytes()
    override = model_config_pb2.ModelConfig()
    text_format.Parse(
        render_pair(cfg, "en", "pt").replace("translator-en-pt", "adhoc-en-pt"), override
    )
    override_json = json_format.MessageToJson(override)

    async def unloaded(name: str) -> None:
        while True:
            index = await client.get_model_repository_index(as_json=True)
            state = {m["name"]: m.get("state", "") for m in index["models"]}.get(name, "")
            if state not in ("READY", "UNLOADING"):
                return
            await asyncio.sleep(0.05)

    async def measure(name: str, **kwargs) -> list[float]:
        times = []
        for _ in range(repeats):
            t0 = time.monotonic()
            await client.load_model(name, **kwargs)
            times.append(round(time.monotonic() - t0, 3))
            await client.unload_model(name)
            await unloaded(name)
        return times

    try:
        result = {
            "per_pair_directory": await measure("translator-en-pt"),
            "all_pairs_translator": await measure("translator"),
            "config_override_with_files": await measure(
                "adhoc-en-pt", config=override_json, files={"file:1/model.py": model_py}
            ),
        }
    finally:
        await client.close()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return result


# ------------------------------------------------------------------ report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench large_models", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--sizes", default="xs,s,m", help=f"any of {', '.join(SIZES)}")
    ap.add_argument("--no-triton", action="store_true", help="skip Triton's load-time part")
    ap.add_argument("--repeats", type=int, default=3, help="Triton loads per variant")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "build":
            print(json.dumps(child_build(Path(rest[0]), rest[1])))
        elif kind == "export":
            print(json.dumps(child_export(Path(rest[0]), Path(rest[1]))))
        elif kind == "load":
            print(json.dumps(child_load(Path(rest[0]), rest[1])))
        return 0

    me = [sys.executable, "-m", "bench.large_models", "--child"]
    env_threads = os.environ.get("OMP_NUM_THREADS")
    points = []
    work = Path(tempfile.mkdtemp(prefix="mtb-large-"))
    try:
        for size in args.sizes.split(","):
            folder, out = work / f"nllb-{size}", work / f"nllb-{size}-onnx"
            built = run_json([*me, "build", str(folder), size], timeout=1800)
            exported = run_json([*me, "export", str(folder), str(out)], timeout=3600)
            meta = exported.pop("meta")
            point = {"size": size, **SIZES[size], **built, **exported, "precisions": {}}
            for precision in BYTES:
                files = meta["precisions"][precision]
                loaded = run_json([*me, "load", str(out), precision], timeout=1800)
                point["precisions"][precision] = {
                    "files": sorted(files.values()),
                    "bytes": _files_bytes(out, files),
                    **loaded,
                }
            points.append(point)
            print(json.dumps({k: v for k, v in point.items() if k != "precisions"}), flush=True)
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rates = fit_rates(points)
    real = nllb_parameters()
    plan = {name: extrapolate(a, rates) for name, a in real.items()}

    report = {
        "machine": machine(),
        "omp_num_threads": env_threads,
        "measured": points,
        "rates": rates,
        "nllb": plan,
    }
    if not args.no_triton:
        from export.provision import ensure_default_models

        model_dir = Path(os.environ.get("MTB_MODEL_DIR") or REPO / ".models")
        ensure_default_models(model_dir)
        report["triton_load_s"] = asyncio.run(_triton_loads(model_dir, args.repeats))

    save("large_models", report, table(report))
    return 0


def table(r: dict) -> str:
    m = r["machine"]
    lines = [
        f"# Large models - measured on {m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB)",
        "",
        "| model | params | export s | export peak RSS MiB | precision | files MB "
        "| load s | load peak RSS MiB |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for p in r["measured"]:
        name = (
            f"nllb-{p['size']} (d={p['d_model']}, {p['layers']}+{p['layers']}, vocab {p['vocab']})"
        )
        for precision, q in p["precisions"].items():
            lines.append(
                f"| {name} | {p['parameters'] / 1e6:.1f}M | {p['export_s']} | {p['peak_rss_mib']} "
                f"| {precision} | {q['bytes'] / 1e6:.1f} | {q['load_s']} | {q['peak_rss_mib']} |"
            )
    lines += [
        "",
        "| precision | file bytes per embedding param | peak RSS per file byte | load s/GB |",
        "| --- | ---: | ---: | ---: |",
    ]
    for precision, q in r["rates"].items():
        lines.append(
            f"| {precision} | {q['embedding_bytes_per_param']} "
            f"| {q['peak_rss_per_file_byte']} | {q['load_s_per_gb']} |"
        )
    lines += [
        "",
        "| model | params | precision | weights GB | ONNX files GB (split decoders) "
        "| CPU peak RSS GB | CPU load s |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, q in r["nllb"].items():
        for precision in BYTES:
            x = q[precision]
            lines.append(
                f"| {name} | {q['parameters'] / 1e9:.2f}B | {precision} | {x['weights_gb']} "
                f"| {x['onnx_files_gb_split_decoders']} | {x['cpu_peak_rss_gb']} "
                f"| {x['cpu_load_s']} |"
            )
    lines += ["", "| model | KV cache GB, B=64, S=T=256: fp16 | fp32 |", "| --- | ---: | ---: |"]
    for name, q in r["nllb"].items():
        kv = q["kv_cache_gb_b64_s256_t256"]
        lines.append(f"| {name} | {kv['fp16']} | {kv['fp32']} |")
    if "triton_load_s" in r:
        lines += [
            "",
            "| Triton load_model (explicit mode), one Bergamot pair | seconds per load |",
            "| --- | --- |",
        ]
        for k, v in r["triton_load_s"].items():
            lines.append(f"| {k} | {', '.join(map(str, v))} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
