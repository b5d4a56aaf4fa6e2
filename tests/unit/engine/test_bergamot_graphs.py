"""The exported ONNX graphs compute what the numpy reference computes.

Random weights of the real shapes, one encoder layer and one decoder layer: the encoder
graph's cross-attention keys/values and one decoder step (SSRU + cross-attention + FFN +
output layer) must match bergamot_math.
"""

import math

import numpy as np
import onnxruntime as ort
import pytest

from control_plane.engine import bergamot_math as bm
from export.bergamot import build_decoder, build_encoder

D, F, V = 256, 64, 50


def random_weights(seed=0):
    rng = np.random.default_rng(seed)

    def m(*shape, s=0.08):
        return rng.normal(0, s, shape).astype(np.float32)

    w = {"Wemb": m(V, D), "decoder_ff_logit_out_b": m(V)}
    attn = ("Wq", "Wk", "Wv", "Wo")
    for p in ("encoder_l1_self_", "decoder_l1_context_"):
        for n in attn:
            w[p + n] = m(D, D)
            w[p + "b" + n[1].lower()] = m(D)
        w[p + "Wo_ln_scale"], w[p + "Wo_ln_bias"] = 1 + m(D), m(D)
    for p in ("encoder_l1_ffn_", "decoder_l1_ffn_"):
        w[p + "W1"], w[p + "b1"], w[p + "W2"], w[p + "b2"] = m(D, F), m(F), m(F, D), m(D)
        w[p + "ffn_ln_scale"], w[p + "ffn_ln_bias"] = 1 + m(D), m(D)
    p = "decoder_l1_rnn_"
    w[p + "W"], w[p + "Wf"], w[p + "bf"] = m(D, D), m(D, D), m(D)
    w[p + "ffn_ln_scale"], w[p + "ffn_ln_bias"] = 1 + m(D), m(D)
    return w


def session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def setup():
    w = random_weights()
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (2, 5, D)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=np.float32)
    return w, x, mask


def test_encoder_layer_matches_numpy(setup):
    w, x, mask = setup
    k, v = session(build_encoder(w)).run(None, {"embeds": x, "attention_mask": mask})
    enc = bm.encoder_layer(x, mask, w, 1)
    p = "decoder_l1_context_"
    ref_k = (enc @ w[p + "Wk"] + w[p + "bk"]).reshape(2, 5, 8, 32).transpose(0, 2, 3, 1)
    ref_v = (enc @ w[p + "Wv"] + w[p + "bv"]).reshape(2, 5, 8, 32).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(k, ref_k, atol=2e-4)
    np.testing.assert_allclose(v, ref_v, atol=2e-4)


def test_padding_does_not_leak(setup):
    w, x, mask = setup
    sess = session(build_encoder(w))
    k_full, _ = sess.run(None, {"embeds": x, "attention_mask": mask})
    x2 = x.copy()
    x2[1, 3:] = 99.0  # garbage in padded positions
    k_garbage, _ = sess.run(None, {"embeds": x2, "attention_mask": mask})
    np.testing.assert_allclose(k_full[1, :, :, :3], k_garbage[1, :, :, :3], atol=1e-4)


def test_ssru_decoder_step_matches_numpy(setup):
    w, x, mask = setup
    enc = bm.encoder_layer(x, mask, w, 1)
    k, v = session(build_encoder(w)).run(None, {"embeds": x, "attention_mask": mask})
    rng = np.random.default_rng(2)
    step_in = rng.normal(0, 1, (2, D)).astype(np.float32)
    state = rng.normal(0, 0.5, (2, D)).astype(np.float32)
    cols = np.array([0, 3, 7, 9])
    out_w = np.ascontiguousarray(w["Wemb"][cols].T)
    bias = np.tile(w["decoder_ff_logit_out_b"][cols], (2, 1))
    bias[1, 2] = -np.inf  # not in row 1's shortlist
    logprobs, new_state = session(build_decoder(w)).run(
        None,
        {
            "x": step_in,
            "attention_mask": mask,
            "out_w": out_w,
            "logit_bias": bias,
            "state_1": state,
            "cross_k_1": k,
            "cross_v_1": v,
        },
    )
    hidden, (ref_state,) = bm.decoder_step(step_in, [state], enc, mask, w, layers=1)
    logits = hidden @ out_w + bias
    ref_lp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
    ref_lp -= logits.max(1, keepdims=True)
    np.testing.assert_allclose(new_state, ref_state, atol=2e-4)
    np.testing.assert_allclose(logprobs[0], ref_lp[0], atol=2e-4)
    assert logprobs[1, 2] == -np.inf
    np.testing.assert_allclose(np.exp(logprobs).sum(1), [1, 1], atol=1e-5)


def test_ssru_step_by_hand():
    """The SSRU recurrence itself: c = f*c_prev + (1-f)*xW, output LN(relu(c) + x)."""
    w = random_weights(3)
    x = np.ones((1, D), np.float32) * 0.1
    c_prev = np.full((1, D), 0.5, np.float32)
    out, c = bm.ssru(x, c_prev, w, 1)
    p = "decoder_l1_rnn_"
    f = 1 / (1 + np.exp(-(x @ w[p + "Wf"] + w[p + "bf"])))
    np.testing.assert_allclose(c, f * 0.5 + (1 - f) * (x @ w[p + "W"]), rtol=1e-5)
    assert out.shape == (1, D)
    assert abs(float(out.mean()) - float(w[p + "ffn_ln_bias"].mean())) < 0.1


def test_positions_are_sin_then_cos():
    p = bm.positions(3)
    assert p.shape == (3, D)
    assert p[0, :128].tolist() == [0.0] * 128 and p[0, 128:].tolist() == [1.0] * 128
    assert p[2, 1] == pytest.approx(math.sin(2 * math.exp(-math.log(10000) / 127)), rel=1e-5)


def test_device_step_is_the_host_step_plus_argmax(setup):
    """decoder_step (device loop) = the embedding lookup + decoder + argmax the host loop
    does around the decoder graph: the same ids, log-probabilities and states."""
    from export.bergamot import build_decoder_step

    w, x, mask = setup
    k, v = session(build_encoder(w)).run(None, {"embeds": x, "attention_mask": mask})
    rng = np.random.default_rng(4)
    table = (w["Wemb"] * 16.0).astype(np.float32)
    table = np.vstack([table, np.zeros((1, D), np.float32)])  # row V: step 0's "no token"
    pos = bm.positions(10)
    prev = np.array([V, 7])  # row 0 at its first step, row 1 after token 7
    state = rng.normal(0, 0.5, (2, D)).astype(np.float32)
    cols = np.array([0, 3, 7, 9, 12, 20, 33, 41])
    out_w = np.ascontiguousarray(w["Wemb"][cols].T)
    bias = np.tile(w["decoder_ff_logit_out_b"][cols], (2, 1))
    bias[0, :5] = -np.inf  # row 0's shortlist: the last three columns only
    common = {"attention_mask": mask, "out_w": out_w, "logit_bias": bias}
    common.update({"state_1": state, "cross_k_1": k, "cross_v_1": v})
    lp, ref_state = session(build_decoder(w)).run(None, {"x": table[prev] + pos[3], **common})
    ids, logprob, step, new_state = session(build_decoder_step(w)).run(
        None,
        {
            "prev_ids": prev,
            "step": np.array([3]),
            "embeddings": table,
            "positions": pos,
            "cols": cols,
            **common,
        },
    )
    assert ids.tolist() == cols[lp.argmax(1)].tolist()
    assert ids[0] in cols[5:]  # the mask holds inside the graph
    np.testing.assert_array_equal(logprob, lp.max(1))
    np.testing.assert_array_equal(new_state, ref_state)
    assert step.tolist() == [4]


def test_fp16_device_step_keeps_device_state_in_fp16():
    """In the fp16 graph only the host-facing tensors stay float32."""
    from export.bergamot import STEP_FP32_IO, STEP_FP32_NODES, build_decoder_step
    from export.precision import to_fp16

    fp16 = to_fp16(
        build_decoder_step(random_weights()),
        keep_io=STEP_FP32_IO,
        fp32_nodes=STEP_FP32_NODES,
    )
    sess = session(fp16)
    kinds = {i.name: i.type for i in [*sess.get_inputs(), *sess.get_outputs()]}
    assert kinds["state_1"] == kinds["cross_k_1"] == kinds["embeddings"] == "tensor(float16)"
    assert kinds["new_state_1"] == kinds["out_w"] == "tensor(float16)"
    assert kinds["logit_bias"] == kinds["next_logprob"] == "tensor(float)"
    assert kinds["next_ids"] == kinds["prev_ids"] == "tensor(int64)"
