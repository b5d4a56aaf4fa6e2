"""ONNX Runtime sessions configured once for the whole engine."""

from __future__ import annotations

import logging
from pathlib import Path

from control_plane.cores import usable_cores

log = logging.getLogger(__name__)

# TensorRT engines take minutes to build; ORT keeps them (per GPU model, TensorRT version
# and graph) under this folder and reuses them across processes and restarts.
TRT_CACHE = Path.home() / ".cache" / "mt-backend" / "trt-engines"
# (min, opt, max) per symbolic dimension of the exported graphs, for TensorRT's one
# optimization profile (it needs all three for every dynamic input, else it rebuilds the
# engine whenever a shape leaves the range seen so far). Batch: up to the device loop's
# largest bucket; src_len: MAX_SOURCE_TOKENS; cands: a batch's shortlist union, at most
# the vocabulary (rounded up). Dimensions not listed here take their value from ``dims``.
TRT_PROFILE = {
    "batch": (1, 64, 1024),
    "src_len": (1, 32, 256),
    "cands": (8, 2048, 32768),  # StaticDeviceLoop rounds 32,000 up to 2**15
}


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


GPU_LANES = 4


def plan_lanes(threads: int = 0, lanes: int = 0, gpu: bool = False) -> tuple[int, int]:
    """(lanes, intra-op threads per lane) for a CPU budget of ``threads`` (0: the cores this
    process may use: ``control_plane.cores.usable_cores``).

    A lane runs one batch at a time; lanes run different batches side by side. On CPU the
    default is one single-threaded lane per core (up to 8): a decoding step multiplies
    matrices of at most 32 x 256, too small for intra-op threads to pay for their
    hand-offs, and the Python part of every step (argmax, finished rows) keeps one core
    while ORT waits; lanes beat intra-op threads on the same chunks (README, "Engine
    quality and speed"). A GPU runs four lanes by default: one lane's host work between
    and around its steps (tokens, shortlist, finished rows) leaves the card idle, which
    the other lanes fill. On the lent H200 (2026-11-30, batch 1024, side by side) 1, 2 and
    4 lanes gave 3.35M, 4.47M and 5.22M words/min; 8 lanes were no better than 4 in the
    GPU check (bench gpu's ``lanes`` part)."""
    cores = threads if threads > 0 else usable_cores()
    if gpu:
        return (lanes if lanes > 0 else GPU_LANES), cores
    n = lanes if lanes > 0 else min(cores, 8)
    return n, max(1, cores // n)


def trt_profile(inputs: list[tuple[str, list]], dims: dict[str, int] | None = None) -> dict:
    """TensorRT EP options ``trt_profile_{min,opt,max}_shapes`` ("name:1x256,...") for
    the dynamic inputs of a graph; ``inputs``: (name, shape with ints or dim names)."""
    ranges = dict(TRT_PROFILE)
    ranges.update({k: (v, v, v) for k, v in (dims or {}).items()})
    shapes: list[list[str]] = [[], [], []]
    for name, shape in inputs:
        if all(isinstance(d, int) for d in shape):
            continue
        for k in range(3):
            sizes = [str(d if isinstance(d, int) else ranges[d][k]) for d in shape]
            shapes[k].append(f"{name}:{'x'.join(sizes)}")
    if not shapes[0]:
        return {}
    keys = ("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes")
    return {key: ",".join(s) for key, s in zip(keys, shapes, strict=True)}


def graph_inputs(model: Path | bytes) -> list[tuple[str, list]]:
    """(name, shape) of a graph's inputs, dims as ints or names."""
    import onnx

    if isinstance(model, bytes):
        proto = onnx.ModelProto.FromString(model)
    else:
        proto = onnx.load(str(model), load_external_data=False)
    out = []
    for i in proto.graph.input:
        dims = i.type.tensor_type.shape.dim
        out.append(
            (i.name, [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims])
        )
    return out


def provider_options(
    providers: list[str],
    model: Path | bytes,
    dims: dict[str, int] | None = None,
    cuda_graph: bool = False,
) -> list[dict]:
    """Options per provider: the TensorRT EP in fp16 with its engine and timing caches and
    one optimization profile covering every shape the engine feeds; the CUDA EP on device
    0 (Triton pins a GPU instance to one device with CUDA_VISIBLE_DEVICES), with CUDA
    graphs when ``cuda_graph`` (the step graph of StaticDeviceLoop: every shape gets its
    own ``gpu_graph_id``). Not with TensorRT first: its EP captures one graph per session
    only (ORT's multi-graph ``gpu_graph_id`` is the CUDA EP's), so there the loop runs
    uncaptured.

    The CUDA EP options (CUDA graphs included) ran on a lent H200 (2026-11-30, bench gpu);
    the TensorRT ones have not run (no TensorRT libraries there).
    """
    out = []
    for p in providers:
        if p == "TensorrtExecutionProvider":
            TRT_CACHE.mkdir(parents=True, exist_ok=True)
            opts = {
                "device_id": "0",
                "trt_fp16_enable": "True",
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": str(TRT_CACHE),
                "trt_timing_cache_enable": "True",
                "trt_timing_cache_path": str(TRT_CACHE),
                "trt_max_workspace_size": str(8 << 30),
            }
            opts.update(trt_profile(graph_inputs(model), dims))
            out.append(opts)
        elif p == "CUDAExecutionProvider":
            capture = cuda_graph and providers[0] == p
            out.append({"device_id": "0", "enable_cuda_graph": "1" if capture else "0"})
        else:
            out.append({})
    return out


def make_session(
    path: Path | bytes,
    threads: int = 0,
    precision: str = "fp32",
    tensorrt: bool = False,
    dims: dict[str, int] | None = None,
    cuda_graph: bool = False,
):
    """``dims``: sizes of a graph's per-model symbolic dimensions (vocab_rows, max_len of
    decoder_step), for TensorRT's profile (see TRT_PROFILE)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads if threads > 0 else usable_cores()
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
    options = provider_options(providers, path, dims, cuda_graph)
    return ort.InferenceSession(
        model, sess_options=opts, providers=providers, provider_options=options
    )
