"""The device loop's in-memory gather graph (padding, compaction, casts) on CPU EP."""

import numpy as np
import onnxruntime as ort

from control_plane.engine.device_loop import device_of, gather_rows_model


def run(model: bytes, feeds: dict) -> list[np.ndarray]:
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def test_rows_are_gathered_and_cast():
    t = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    ids = np.array([5, 6, 7, 8])
    model = gather_rows_model([np.float32, np.int64], [np.float16, np.int64], [3, 1])
    g, i = run(model, {"idx": np.array([3, 1, 3]), "t_0": t, "t_1": ids})
    assert g.dtype == np.float16 and g.tolist() == t[[3, 1, 3]].tolist()
    assert i.tolist() == [8, 6, 8]


def test_sources_are_zero_padded_on_their_own_axis():
    k = np.ones((2, 8, 32, 5), np.float32)  # cross_k: src_len last
    v = np.ones((2, 8, 5, 32), np.float32)  # cross_v: src_len third
    model = gather_rows_model([np.float32] * 2, [np.float32] * 2, [4, 4], [3, 2])
    gk, gv = run(model, {"idx": np.array([1, 0]), "pad": np.array([3]), "t_0": k, "t_1": v})
    assert gk.shape == (2, 8, 32, 8) and gv.shape == (2, 8, 8, 32)
    assert gk[..., :5].min() == 1 and gk[..., 5:].max() == 0
    assert gv[:, :, :5].min() == 1 and gv[:, :, 5:].max() == 0


def test_cpu_sessions_compute_on_the_host():
    sess = ort.InferenceSession(
        gather_rows_model([np.float32], [np.float32], [1]), providers=["CPUExecutionProvider"]
    )
    assert device_of(sess) == ("cpu", 0)
