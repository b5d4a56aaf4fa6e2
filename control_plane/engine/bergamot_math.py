"""The Bergamot student network in plain numpy: the reference the ONNX graphs are tested
against, and the host-side pieces (embeddings, positions) the engine computes itself.

Shapes follow Marian (src/models/transformer.h, src/rnn/cells.h): post-norm ("dan")
transformer encoder, decoder layers with an SSRU instead of self-attention, tied
embeddings scaled by sqrt(dim), sinusoidal positions with sin and cos halves
concatenated. Embedding lookups stay on the host because the output layer needs the
embedding rows of each batch's shortlist anyway.
"""

from __future__ import annotations

import math

import numpy as np

DIM = 256
HEADS = 8
EPS = 1e-6
MASK_NEG = -1e4  # additive mask; still finite in fp16


def positions(length: int, dim: int = DIM) -> np.ndarray:
    half = dim // 2
    scale = np.exp(-np.arange(half, dtype=np.float32) * (math.log(10000.0) / (half - 1)))
    angles = np.arange(length, dtype=np.float32)[:, None] * scale[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


def layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return g * (x - mu) / np.sqrt(var + EPS) + b


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def attention(q_in, kv_in, w: dict, prefix: str, mask: np.ndarray) -> np.ndarray:
    """Multi-head attention; q_in [B,Tq,D], kv_in [B,Tk,D], mask [B,Tk] of 0/1."""
    b, tq, d = q_in.shape
    tk = kv_in.shape[1]
    dh = d // HEADS
    q = (q_in @ w[prefix + "Wq"] + w[prefix + "bq"]).reshape(b, tq, HEADS, dh).transpose(0, 2, 1, 3)
    k = (
        (kv_in @ w[prefix + "Wk"] + w[prefix + "bk"])
        .reshape(b, tk, HEADS, dh)
        .transpose(0, 2, 3, 1)
    )
    v = (
        (kv_in @ w[prefix + "Wv"] + w[prefix + "bv"])
        .reshape(b, tk, HEADS, dh)
        .transpose(0, 2, 1, 3)
    )
    s = (q / math.sqrt(dh)) @ k + ((1.0 - mask) * MASK_NEG)[:, None, None, :]
    c = (softmax(s) @ v).transpose(0, 2, 1, 3).reshape(b, tq, d)
    return c @ w[prefix + "Wo"] + w[prefix + "bo"]


def ffn(x: np.ndarray, w: dict, prefix: str) -> np.ndarray:
    h = np.maximum(x @ w[prefix + "W1"] + w[prefix + "b1"], 0.0)
    return h @ w[prefix + "W2"] + w[prefix + "b2"]


def encoder_layer(x: np.ndarray, mask: np.ndarray, w: dict, layer: int) -> np.ndarray:
    p = f"encoder_l{layer}_"
    x = layer_norm(
        attention(x, x, w, p + "self_", mask) + x,
        w[p + "self_Wo_ln_scale"],
        w[p + "self_Wo_ln_bias"],
    )
    return layer_norm(
        ffn(x, w, p + "ffn_") + x, w[p + "ffn_ffn_ln_scale"], w[p + "ffn_ffn_ln_bias"]
    )


def ssru(x: np.ndarray, state: np.ndarray, w: dict, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """One SSRU step: returns (layer output after residual + norm, new cell state)."""
    p = f"decoder_l{layer}_rnn_"
    f = 1.0 / (1.0 + np.exp(-(x @ w[p + "Wf"] + w[p + "bf"])))
    c = f * state + (1.0 - f) * (x @ w[p + "W"])
    out = layer_norm(np.maximum(c, 0.0) + x, w[p + "ffn_ln_scale"], w[p + "ffn_ln_bias"])
    return out, c


def decoder_step(x, states, enc, mask, w, layers: int):
    """x [B,D] (scaled embedding + position); returns (hidden [B,D], new states)."""
    new_states = []
    for layer in range(1, layers + 1):
        x, c = ssru(x, states[layer - 1], w, layer)
        new_states.append(c)
        p = f"decoder_l{layer}_"
        a = attention(x[:, None, :], enc, w, p + "context_", mask)[:, 0, :]
        x = layer_norm(a + x, w[p + "context_Wo_ln_scale"], w[p + "context_Wo_ln_bias"])
        x = layer_norm(
            ffn(x, w, p + "ffn_") + x, w[p + "ffn_ffn_ln_scale"], w[p + "ffn_ffn_ln_bias"]
        )
    return x, new_states
