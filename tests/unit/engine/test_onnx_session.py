"""Execution-provider options: what the TensorRT and CUDA EPs are given (the options are
checked here; the EPs themselves only exist on GPU machines)."""

import numpy as np

from control_plane.engine import onnx_session
from control_plane.engine.device_loop import gather_rows_model
from control_plane.engine.onnx_session import make_session, provider_options, trt_profile


def test_trt_profile_covers_every_dynamic_input():
    inputs = [
        ("prev_ids", ["batch"]),
        ("step", [1]),  # static: no profile entry
        ("embeddings", ["vocab_rows", 256]),
        ("cross_k_1", ["batch", 8, 32, "src_len"]),
        ("out_w", [256, "cands"]),
    ]
    p = trt_profile(inputs, {"vocab_rows": 32001})
    assert p["trt_profile_min_shapes"] == (
        "prev_ids:1,embeddings:32001x256,cross_k_1:1x8x32x1,out_w:256x8"
    )
    assert p["trt_profile_opt_shapes"] == (
        "prev_ids:64,embeddings:32001x256,cross_k_1:64x8x32x32,out_w:256x2048"
    )
    assert p["trt_profile_max_shapes"] == (
        "prev_ids:1024,embeddings:32001x256,cross_k_1:1024x8x32x256,out_w:256x32768"
    )
    assert trt_profile([("step", [1])]) == {}


def test_tensorrt_gets_fp16_and_its_engine_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_session, "TRT_CACHE", tmp_path / "trt")
    model = gather_rows_model([np.float32], [np.float32], [2])
    trt, cuda, cpu = provider_options(
        ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        model,
        {"n": 4, "d0_0": 4, "d0_1": 3},
    )
    assert trt["trt_fp16_enable"] == "True"
    assert trt["trt_engine_cache_enable"] == "True"
    assert trt["trt_engine_cache_path"] == str(tmp_path / "trt")
    assert (tmp_path / "trt").is_dir()
    assert trt["trt_profile_max_shapes"] == "idx:4,t_0:4x3"
    assert cuda == {"device_id": "0", "enable_cuda_graph": "0"} and cpu == {}


def test_cpu_sessions_from_bytes():
    """The device loop's gather graphs are built in memory; on CPU they run as they are."""
    sess = make_session(gather_rows_model([np.float32], [np.float16], [2]), threads=1)
    assert sess.get_providers() == ["CPUExecutionProvider"]
    t = np.arange(12, dtype=np.float32).reshape(4, 3)
    (g,) = sess.run(None, {"idx": np.array([2, 0, 2]), "t_0": t})
    assert g.dtype == np.float16 and g.tolist() == t[[2, 0, 2]].tolist()


def test_cuda_graphs_only_where_the_cuda_ep_runs_the_graph(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_session, "TRT_CACHE", tmp_path / "trt")
    model = gather_rows_model([np.float32], [np.float32], [1])
    cuda, _ = provider_options(["CUDAExecutionProvider", "CPUExecutionProvider"], model, {}, True)
    assert cuda["enable_cuda_graph"] == "1"
    plain, _ = provider_options(["CUDAExecutionProvider", "CPUExecutionProvider"], model)
    assert plain["enable_cuda_graph"] == "0"
    dims = {"n": 1, "d0_0": 1}
    _, behind_trt = provider_options(
        ["TensorrtExecutionProvider", "CUDAExecutionProvider"], model, dims, True
    )
    assert behind_trt["enable_cuda_graph"] == "0"
