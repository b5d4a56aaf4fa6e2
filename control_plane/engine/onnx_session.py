"""ONNX Runtime sessions configured once for the whole engine."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def providers_for(precision: str, tensorrt: bool = False) -> list[str]:
    """CUDA (TensorRT first when ``tensorrt``, Settings.tensorrt) for fp16 graphs if present,
    else CPU. A parameter, not an environment variable read here, so one process can hold
    engines configured differently and tests can say which they mean."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    chosen = []
    if precision == "fp16":
        if tensorrt and "TensorrtExecutionProvider" in available:
            chosen.append("TensorrtExecutionProvider")
        if "CUDAExecutionProvider" in available:
            chosen.append("CUDAExecutionProvider")
    chosen.append("CPUExecutionProvider")
    return chosen


def uses_gpu(precision: str, tensorrt: bool = False) -> bool:
    return any(p != "CPUExecutionProvider" for p in providers_for(precision, tensorrt))


def plan_lanes(threads: int = 0, lanes: int = 0, gpu: bool = False) -> tuple[int, int]:
    """(lanes, intra-op threads per lane) for a CPU budget of ``threads`` (0: all cores).

    A lane runs one batch at a time; lanes run different batches side by side. On CPU the
    default is one single-threaded lane per core (up to 8): a decoding step multiplies
    matrices of at most 32 x 256, too small for intra-op threads to pay for their
    hand-offs, and the Python part of every step (argmax, finished rows) keeps one core
    while ORT waits; lanes beat intra-op threads on the same chunks (README, "Engine
    quality and speed"). A GPU runs one lane: its kernels already fill the card."""
    cores = threads if threads > 0 else (os.cpu_count() or 1)
    if gpu:
        return 1, cores
    n = lanes if lanes > 0 else min(cores, 8)
    return n, max(1, cores // n)


def make_session(
    path: Path | bytes, threads: int = 0, precision: str = "fp32", tensorrt: bool = False
):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads if threads > 0 else (os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # No busy-waiting between ops: the engine shares its cores with the event loop, the
    # DB and other engine calls, and spinning threads take the CPU those need (about half
    # the throughput under such load when it was on).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    providers = providers_for(precision, tensorrt)
    if precision == "fp16" and providers == ["CPUExecutionProvider"]:
        log.warning("fp16 graphs on CPU are slow; use int8 or fp32 without a GPU")
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, sess_options=opts, providers=providers)
