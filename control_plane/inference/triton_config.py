"""One source for the ``translator`` model's Triton configs (CPU and GPU).

``model_repository/translator/config.pbtxt`` (KIND_CPU, int8) and
``model_repository/translator/configs/gpu.pbtxt`` (KIND_GPU, fp16, ONNX Runtime CUDA or
TensorRT execution provider; served with ``tritonserver --model-config-name=gpu``) are
both written by this module; a unit test fails when a committed file drifts from it.

    python -m control_plane.inference.triton_config            # rewrite both files
    python -m control_plane.inference.triton_config --check    # exit 1 on drift
    python -m control_plane.inference.triton_config --kind cpu --instances 2 --threads 1 \\
        --stdout                                                # a variant, printed

Protocol of the model (one request = one batch of segments of one language pair):

* ``TEXT``        BYTES [-1]  the segments (ragged: requests of any length batch together)
* ``SOURCE_LANG`` BYTES [1]   e.g. ``en``
* ``TARGET_LANG`` BYTES [1]   e.g. ``pt``
* ``TRANSLATION`` BYTES [-1]  one translation per segment, in order
* ``SCORE``       FP32  [-1]  exp(mean token log-probability) per segment

``max_batch_size`` counts requests (each request has batch dimension 1), so one
execution holds up to that many requests, of any pairs; the model groups them by pair.
A request with empty SOURCE_LANG and TARGET_LANG is a catalog query: TRANSLATION lists
``source<TAB>target<TAB>model_version`` for every pair served.

Priorities: Triton level 1 = critical, 2 = high, 3 = normal (the default for unlabelled
requests). Each level has a bounded queue (``max_queue_size``; a full queue rejects with
UNAVAILABLE) and a queueing timeout (requests may ask for a shorter one).

Critical work has capacity of its own (issue 15, point 4): ``translator_urgent`` is the
same model.py (``translator_urgent/1/model.py`` links to the translator's) under its own
name, with a process and engine of its own; the client (triton.py) sends critical and high
requests there while it is ready. The options measured with ``python -m bench stack
--inference triton`` (100k-word normal backlog, 100-word critical jobs; 2-core Intel Xeon
VM shared with other jobs, 2026-11-30; README, "Benchmarks"):

* one model, executions of 16 requests (before): a critical request (the python backend
  gives execute() no priorities) waited for the execution in progress and shared its own
  with normal work: critical 0.9-1.7 s, stack 0.72x the in-process engine;
* the client capping one call's requests in Triton's queue (MTB_TRITON_INFLIGHT_REQUESTS=4):
  critical 0.36-0.68 s at 151,730 words/min (smaller executions cost throughput);
* an urgent model, normal executions of 64 requests: critical 0.24-0.51 s: no wait for an
  execution, but every process on two cores shares them with the two busy normal lanes;
  stack 0.82x (one run);
* the same with the normal model at nice 10: critical 0.19-0.42 s; the control plane and
  the urgent model take the cores when they need them, normal work the rest; stack 0.89x
  in the one run the load let mean anything; Triton's words per CPU-second 0.91-0.94x
  the engine's;
* the same with the normal model as 2 instances x 1 thread (before): critical p95 0.31 s
  over 35 probes in seven runs (0.19-0.40 s per run); stack / engine alone median 0.92x,
  mean 0.89x, spread 0.64-1.01x (the goal of 0.9x is not met reliably on the shared VM);
  words per CPU-second: Triton 0.90-0.98x the engine's, the whole stack (control plane,
  PostgreSQL and Kafka too) 0.78-0.86x.
* one instance x 2 lanes (chosen; measured again on a quiet machine, 2026-11-30 09:00 UTC).
  Triton alone under the worker's load (two callers each sending 8,000-word calls as
  requests of 16 segments, the next call as soon as one returns; 80k words, three
  alternating rounds): engine alone 187-202k words/min; 2 x 1 with executions of 64
  requests 145-169k (0.80x: one execution takes a caller's whole call, and the other
  instance waits whenever the two calls end apart: 1.6 of 2 cores busy); 2 x 1 with 32
  requests 174-188k (0.94x); 2 x 1 with 16 requests of 32 segments 176-182k (0.93x);
  1 x 2 lanes 181-199k (0.97x: its two lanes share each execution the way the engine
  alone shares a call); 2 instances x 2 lanes 149-160k (four busy threads on two cores).

* one instance x 2 lanes with two executions in flight (``overlap`` 2, chosen; model.py:
  execute returns while the execution translates on a thread and answers through response
  senders): the next execution's batches wait on the lanes before the current one's end,
  so the lanes no longer idle between executions. Same Xeon, 2026-12-01, alternating,
  engine alone on the backlog's own documents: stack 0.93x / 0.91x the engine alone with
  overlap 2, 0.89x / 0.89x with overlap 1; critical p95 0.19-0.25 s either way.

Not measured, ruled out by design: a second instance of the one model for critical work
(Triton hands any instance any request, so none stays free for it); Triton's rate limiter
(it orders instances, not requests within a model); a decoupled model that hands requests
to the engine's lanes by priority (the gRPC client would have to stream every call, and
Triton's per-level queues and timeouts would stop bounding the backlog).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from control_plane.domain import PRIORITY_RANK

MODEL_NAME = "translator"
# critical and high requests: the same model.py with a process of its own (issue 15 point 4)
URGENT_MODEL_NAME = "translator_urgent"
REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_REPOSITORY = REPO_ROOT / "model_repository"

# Triton priority levels count from 1 (most urgent); 0 would mean "the default level"
PRIORITY_LEVELS = {p: rank + 1 for p, rank in PRIORITY_RANK.items()}


@dataclass(frozen=True)
class QueuePolicy:
    max_queue_size: int  # requests waiting at this level; more are rejected (UNAVAILABLE)
    timeout_us: int  # a request waiting longer than this in the queue is rejected

    def render(self, indent: str) -> str:
        return (
            f"{indent}timeout_action: REJECT\n"
            f"{indent}default_timeout_microseconds: {self.timeout_us}\n"
            f"{indent}allow_timeout_override: true\n"
            f"{indent}max_queue_size: {self.max_queue_size}\n"
        )


PRECISIONS = ("int8", "fp32", "fp16", "auto")


@dataclass(frozen=True)
class TranslatorConfig:
    name: str = MODEL_NAME  # the model's directory under the repository
    kind: str = "cpu"  # cpu | gpu
    # graphs the engine loads: int8 | fp32 | fp16 | auto (control_plane/engine/precision.py:
    # int8 or fp32, whichever this CPU runs faster, measured once per store and machine;
    # fp16 on a GPU). The committed CPU config names int8, as the README's figures do.
    precision: str = "int8"
    execution_provider: str = "cpu"  # cpu | cuda | tensorrt (ONNX Runtime inside model.py)
    # CPU defaults measured with `python -m bench triton` on a 2-core AMD EPYC shared with
    # other jobs (bench/results/triton.md), ONNX Runtime without spinning (engine 0f568a2):
    # * 1 instance x 2 threads: one 200-sentence call through Triton ran at 0.91-1.12x of the
    #   in-process engine (2 threads); 2 instances x 1 thread 0.6-0.8x: each instance gets
    #   half the sentences, a smaller length-sorted pool, one thread each. (With spinning on,
    #   before 0f568a2, it was the other way round: 2 x 1 = 1.5x, 1 x 2 = 0.8x.)
    #   Under a sustained backlog the normal model (CPU) ran 2 x 1 for a while (bench stack,
    #   2-core Intel Xeon, 2026-11-30: within that VM's noise of 1 x 2); measured side by
    #   side with the worker's load it is 1 x 2 again (module docstring): two instances
    #   split each caller's call unevenly and one waits while the other ends its execution.
    # * preferred sizes: only max_batch_size. With (4, 8, 16) a burst of concurrent requests
    #   was cut into executions of 4 (smaller pools, 0.58x); without small preferred sizes
    #   the batcher takes whatever arrived within the 2 ms delay, up to the maximum.
    # * max_queue_delay: 0-10 ms gave 8.5-10.6 requests per execution for 32 one-sentence
    #   clients (the queue is never empty under load); 2 ms is below one sentence's cost.
    # * max_batch_size: 64 requests for the normal model (16 before the urgent model:
    #   a critical request waited for the running execution, and short ones bounded that);
    #   larger executions sort larger pools and leave lanes idle at their ends less often.
    instances: int = 1  # model instances (processes); GPU: per device
    gpus: tuple[int, ...] = ()  # empty: every visible GPU
    threads: int = 2  # CPU budget per instance: lanes x intra-op threads (0: all cores)
    lanes: int = 0  # engine lanes (batches side by side); 0: plan_lanes (1 per core on CPU)
    # the instance's scheduling niceness (os.nice in model.py, before its threads start): a
    # busy normal model at 10 leaves the cores to whatever else needs them at once (the
    # urgent model, the control plane on the same machine), then takes every idle cycle
    nice: int = 0
    engine_batch: int = 32  # sentences per encoder/decoder batch inside the engine
    # the engine's decoding loop (control_plane/engine/device_loop.py): auto = the
    # device-resident loop on a GPU provider, the host loop on CPU
    decoder_loop: str = "auto"
    cuda_graph: bool = False  # CUDA graph capture of the device loop's steps (CUDA EP only)
    beam_size: int = 1
    # executions whose translation may be in flight at once in one instance (model.py:
    # execute hands the translation to a thread, answers through response senders and
    # returns while fewer are in flight): the next execution's segments wait on the lanes
    # before this one's last batch ends. 1: the synchronous execute (the GPU configs: no
    # device has run the overlap yet)
    overlap: int = 1
    max_batch_size: int = 16  # requests per execution
    preferred_batch_sizes: tuple[int, ...] = (16,)
    max_queue_delay_us: int = 2000
    default_priority_level: int = 3
    queue_policies: dict[int, QueuePolicy] = field(
        default_factory=lambda: {
            1: QueuePolicy(max_queue_size=256, timeout_us=60_000_000),
            2: QueuePolicy(max_queue_size=512, timeout_us=120_000_000),
            3: QueuePolicy(max_queue_size=1024, timeout_us=300_000_000),
        }
    )
    model_dir: str = ""  # empty: MTB_MODEL_DIR of the server's environment, else the default

    def __post_init__(self) -> None:
        if self.kind not in ("cpu", "gpu"):
            raise ValueError(f"kind must be cpu or gpu, not {self.kind!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
        if self.execution_provider not in ("cpu", "cuda", "tensorrt"):
            raise ValueError("execution_provider must be cpu, cuda or tensorrt")
        if self.kind == "cpu" and self.execution_provider != "cpu":
            raise ValueError("a KIND_CPU config runs the CPU execution provider")
        if self.instances < 1 or self.max_batch_size < 1 or self.overlap < 1:
            raise ValueError("instances, max_batch_size and overlap must be >= 1")
        if any(not 0 < p <= self.max_batch_size for p in self.preferred_batch_sizes):
            raise ValueError("preferred batch sizes must lie in 1..max_batch_size")
        if not 1 <= self.default_priority_level <= 3 or sorted(self.queue_policies) != [1, 2, 3]:
            raise ValueError("three priority levels (1..3), each with a queue policy")


# normal work: one instance (process) with two single-threaded lanes at nice 10, executions
# of up to 64 requests (the module docstring says why not two instances)
CPU = TranslatorConfig(
    instances=1, threads=2, max_batch_size=64, preferred_batch_sizes=(64,), nice=10, overlap=2
)
# critical and high requests (the client sends them here while it is ready): a process and
# engine of its own, so they never wait for a normal execution to end; idle, it costs memory
# only (~360 MB). Small executions: urgent work is small, and a big critical call should
# not hold high ones long; one process with two lanes, so a big one still gets both cores.
URGENT_CPU = replace(
    CPU,
    name=URGENT_MODEL_NAME,
    instances=1,
    threads=2,
    max_batch_size=16,
    preferred_batch_sizes=(16,),
    nice=0,
)
GPU = TranslatorConfig(
    kind="gpu",
    precision="fp16",
    execution_provider="cuda",
    instances=1,
    threads=1,
    # the device loop keeps state on the card and takes batches of up to 1,024 sentences
    # (issue 15: a batch of 64 leaves an H200 mostly idle); 256 requests of the client's
    # MTB_TRITON_REQUEST_SEGMENTS segments fill such batches under load
    decoder_loop="device",
    engine_batch=1024,
    # one process, 4 lanes: an execution of up to 256 requests of 16 segments holds up to
    # 4 engine batches, run side by side (on the lent H200, 2026-11-30, 256 clients:
    # 2.57M words/min against 1.62M for 4 instances x 1 lane; bench/results/gpu)
    lanes=4,
    max_batch_size=256,
    preferred_batch_sizes=(256,),
    max_queue_delay_us=2000,
)
# urgent work is small: short executions, so a big critical call does not hold high ones long
URGENT_GPU = replace(
    GPU, name=URGENT_MODEL_NAME, engine_batch=64, max_batch_size=16, preferred_batch_sizes=(16,)
)


def render(cfg: TranslatorConfig) -> str:
    """config.pbtxt text for ``cfg`` (deterministic, so committed files can be compared)."""
    kind = "KIND_CPU" if cfg.kind == "cpu" else "KIND_GPU"
    gpus = f"\n    gpus: [ {', '.join(map(str, cfg.gpus))} ]" if cfg.gpus else ""
    preferred = ", ".join(map(str, cfg.preferred_batch_sizes))
    policies = "".join(
        f"  priority_queue_policy {{\n    key: {level}\n    value {{\n"
        f"{cfg.queue_policies[level].render('      ')}    }}\n  }}\n"
        for level in sorted(cfg.queue_policies)
    )
    params = {
        "precision": cfg.precision,
        "execution_provider": cfg.execution_provider,
        "threads": str(cfg.threads),
        "lanes": str(cfg.lanes),
        "nice": str(cfg.nice),
        "engine_batch": str(cfg.engine_batch),
        "decoder_loop": cfg.decoder_loop,
        "cuda_graph": str(cfg.cuda_graph).lower(),
        "beam_size": str(cfg.beam_size),
        "overlap": str(cfg.overlap),
        "model_dir": cfg.model_dir,
    }
    parameters = "".join(
        f'parameters {{\n  key: "{k}"\n  value {{ string_value: "{v}" }}\n}}\n'
        for k, v in params.items()
    )
    return f"""\
# GENERATED by `python -m control_plane.inference.triton_config`; edit that module, not this.
# {cfg.kind.upper()}: {cfg.precision} graphs on ONNX Runtime's {cfg.execution_provider} \
execution provider.
name: "{cfg.name}"
backend: "python"
max_batch_size: {cfg.max_batch_size}
input [
  {{
    name: "TEXT"
    data_type: TYPE_STRING
    dims: [ -1 ]
    allow_ragged_batch: true
  }},
  {{
    name: "SOURCE_LANG"
    data_type: TYPE_STRING
    dims: [ 1 ]
  }},
  {{
    name: "TARGET_LANG"
    data_type: TYPE_STRING
    dims: [ 1 ]
  }}
]
output [
  {{
    name: "TRANSLATION"
    data_type: TYPE_STRING
    dims: [ -1 ]
  }},
  {{
    name: "SCORE"
    data_type: TYPE_FP32
    dims: [ -1 ]
  }}
]
instance_group [
  {{
    count: {cfg.instances}
    kind: {kind}{gpus}
  }}
]
dynamic_batching {{
  preferred_batch_size: [ {preferred} ]
  max_queue_delay_microseconds: {cfg.max_queue_delay_us}
  preserve_ordering: false
  priority_levels: 3
  default_priority_level: {cfg.default_priority_level}
{policies}}}
{parameters}"""


def targets(repository: Path = MODEL_REPOSITORY) -> dict[Path, TranslatorConfig]:
    out = {}
    for cpu, gpu in ((CPU, GPU), (URGENT_CPU, URGENT_GPU)):
        model = repository / cpu.name
        out[model / "config.pbtxt"] = cpu
        out[model / "configs" / "gpu.pbtxt"] = gpu
    return out


# the urgent model runs the translator's model.py (a relative symlink, committed)
URGENT_MODEL_PY = Path(URGENT_MODEL_NAME) / "1" / "model.py"
URGENT_LINK = Path("..") / ".." / MODEL_NAME / "1" / "model.py"


def write(repository: Path = MODEL_REPOSITORY) -> list[Path]:
    written = []
    for path, cfg in targets(repository).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(cfg))
        written.append(path)
    link = repository / URGENT_MODEL_PY
    if not link.is_symlink() or link.readlink() != URGENT_LINK:
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(URGENT_LINK)
        written.append(link)
    return written


def copy_repository(
    dest: Path, cfg: TranslatorConfig, urgent: TranslatorConfig | None = None
) -> Path:
    """A private model repository at ``dest``: the translator's model.py with ``cfg`` as
    its only config, and with ``urgent`` the urgent model beside it (benchmarks and tests
    that try a configuration without touching the committed one)."""
    import shutil

    for c in (cfg, urgent) if urgent is not None else (cfg,):
        model = dest / c.name
        shutil.copytree(
            MODEL_REPOSITORY / MODEL_NAME,
            model,
            ignore=shutil.ignore_patterns("__pycache__", "configs"),
        )
        (model / "config.pbtxt").write_text(render(c))
    return dest


def drift(repository: Path = MODEL_REPOSITORY) -> list[Path]:
    """Committed config files that differ from what this module renders (and the urgent
    model's model.py when it is not the link to the translator's)."""
    bad = [
        path
        for path, cfg in targets(repository).items()
        if not path.is_file() or path.read_text() != render(cfg)
    ]
    link = repository / URGENT_MODEL_PY
    if not link.is_symlink() or link.readlink() != URGENT_LINK:
        bad.append(link)
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m control_plane.inference.triton_config",
        description="Write the translator model's CPU and GPU config.pbtxt from one source.",
    )
    ap.add_argument("--check", action="store_true", help="exit 1 if a committed file drifts")
    ap.add_argument("--repository", type=Path, default=MODEL_REPOSITORY)
    ap.add_argument("--stdout", action="store_true", help="print one variant, write nothing")
    ap.add_argument("--kind", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--instances", type=int)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--execution-provider", choices=["cpu", "cuda", "tensorrt"])
    ap.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="graphs the model loads (auto: int8 or fp32, whichever this CPU runs faster)",
    )
    ap.add_argument("--max-batch-size", type=int)
    ap.add_argument("--preferred", help="comma-separated preferred batch sizes")
    ap.add_argument("--max-queue-delay-us", type=int)
    ap.add_argument("--overlap", type=int, help="executions in flight per instance (1: none)")
    ap.add_argument("--model-dir", help="model store the server reads (default: MTB_MODEL_DIR)")
    args = ap.parse_args(argv)
    if args.check:
        bad = drift(args.repository)
        for path in bad:
            print(f"{path} differs from the generator; run {ap.prog}", file=sys.stderr)
        return 1 if bad else 0
    if args.stdout:
        cfg = CPU if args.kind == "cpu" else GPU
        changes = {
            "instances": args.instances,
            "threads": args.threads,
            "execution_provider": args.execution_provider,
            "precision": args.precision,
            "max_batch_size": args.max_batch_size,
            "max_queue_delay_us": args.max_queue_delay_us,
            "overlap": args.overlap,
            "model_dir": args.model_dir,
        }
        if args.preferred:
            changes["preferred_batch_sizes"] = tuple(int(x) for x in args.preferred.split(","))
        cfg = replace(cfg, **{k: v for k, v in changes.items() if v is not None})
        sys.stdout.write(render(cfg))
        return 0
    for path in write(args.repository):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
