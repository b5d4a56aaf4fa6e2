"""Measured words/min per instance kind, read from ``bench/results``.

The cost model and the capacity simulator price and size instances from these figures, so
they must come from what this project measured, not from a guess: a kind whose figure is
not measured yet (the GPU until ``bench/results/gpu/gpu.json`` exists) carries an estimate
marked ``measured=False`` with the basis of the guess in ``source``.

Which CPU figure: ``stack.json``'s ``stack_words_per_min``, the sustained rate of one
``mtctl worker`` replica (Kafka, PostgreSQL, the int8 engine) draining a 100k-word backlog.
It is the production path under load rather than the engine alone (an upper bound that
skips the queue, the database and assembly), and the API, PostgreSQL and Kafka shared the
same cores, so it does not flatter a replica. The other figures found are listed by
:func:`cpu_candidates` for ``mtctl cost`` to show beside it.

    from control_plane.capacity.rates import measured_kinds
    kinds = measured_kinds()                 # {"cpu": ..., "gpu": ..., "gpu-spot": ...}
    kinds["cpu"].words_per_minute, kinds["gpu"].measured
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from control_plane.settings import Settings

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
GPU_RESULTS = Path("gpu") / "gpu.json"

CPU, GPU, GPU_SPOT = "cpu", "gpu", "gpu-spot"
# words/s of a CPU instance when nothing was measured and MTB_THROUGHPUT_WPS is 0: a guess
# far below every figure measured here, so a missing results folder never flatters
FALLBACK_WPS = 60.0

# Issue 15: the PyTorch fp16 greedy ceiling for a Marian-base-sized model on an H200 is
# 9.3M words/min at batch 1024, and the goal for our engine is at least half of it.
GPU_ESTIMATE_BASIS = (
    "estimate: issue 15's goal, 50% of the PyTorch fp16 ceiling measured for a "
    "Marian-base-sized model on an H200 (9.3M words/min at batch 1024); not measured "
    "through our engine yet"
)


@dataclass(frozen=True)
class InstanceKind:
    """One kind of instance the deployment can run translation on: its sustained speed
    (one Triton/worker replica per instance), its price, and where the speed came from."""

    name: str
    words_per_minute: float
    price_per_hour: float
    gpu: bool
    measured: bool
    source: str  # the results file and figure, or "estimate: <basis>"

    @property
    def words_per_second(self) -> float:
        return self.words_per_minute / 60.0

    @property
    def price_per_second(self) -> float:
        return self.price_per_hour / 3600.0


@dataclass(frozen=True)
class Figure:
    """A words/min figure found in a results file, a candidate for a kind's rate."""

    words_per_minute: float
    source: str
    cores: int = 0  # cores of the machine it ran on (0: unknown)


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("cost rates: %s unreadable: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def _dig(data: dict[str, Any], *keys: str) -> float | None:
    node: Any = data
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    if isinstance(node, bool) or not isinstance(node, int | float) or node <= 0:
        return None
    return float(node)


def _cores(data: dict[str, Any]) -> int:
    machine = data.get("machine")
    cores = machine.get("cores") if isinstance(machine, dict) else None
    return cores if isinstance(cores, int) and cores > 0 else 0


def _machine(data: dict[str, Any]) -> str:
    machine = data.get("machine")
    if not isinstance(machine, dict):
        return "machine not recorded"
    return f"{machine.get('cores', '?')} cores, {machine.get('cpu', '?')}"


# (file, keys, what the figure is), in order of preference: the first one present is the
# cpu kind's rate (see the module docstring for why stack.json comes first)
CPU_FIGURES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "stack.json",
        ("stack_words_per_min",),
        "sustained stack throughput (REST -> PostgreSQL -> Kafka -> mtctl worker, int8) "
        "over a 100k-word backlog",
    ),
    (
        "latency.json",
        ("overhead", "off_words_per_min"),
        "stack throughput through Triton (tracing off)",
    ),
    (
        "service.json",
        ("document", "words_per_min"),
        "embedded service, one 15k-word document end to end",
    ),
    ("stack.json", ("engine_alone", "words_per_min"), "in-process engine alone (upper bound)"),
)


def cpu_candidates(results_dir: Path | None = None) -> list[Figure]:
    """Every CPU words/min figure present, the chosen one first."""
    results_dir = Path(results_dir) if results_dir is not None else RESULTS_DIR
    found = []
    for name, keys, what in CPU_FIGURES:
        data = _load(results_dir / name)
        value = _dig(data, *keys) if data else None
        if value is not None and data is not None:
            where = f"{name}: {'.'.join(keys)}"
            found.append(Figure(value, f"{where} = {value:,.0f} - {what}; {_machine(data)}",
                                _cores(data)))  # fmt: skip
    return found


def _walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, str(i)))
    else:
        yield path, node


# a GPU results file also holds reference figures that are not our replica's speed
_NOT_OURS = ("ceiling", "torch", "pytorch", "cpu", "reference")


def gpu_figure(results_dir: Path | None = None) -> Figure | None:
    """The best sustained words/min through Triton on the GPU (else through our engine on
    the GPU) in ``gpu/gpu.json`` (``python -m bench gpu``); ``None`` until that file
    exists or when it is a dry run. Reference figures in it (the PyTorch ceiling, the CPU
    baseline) are never taken for ours."""
    results_dir = Path(results_dir) if results_dir is not None else RESULTS_DIR
    data = _load(results_dir / GPU_RESULTS)
    if not data or data.get("dry_run"):  # a dry run's figures are the CPU's
        return None
    card = data.get("device") or data.get("gpu") or data.get("card") or "GPU"
    card = card.get("name", "GPU") if isinstance(card, dict) else str(card)
    # bench/gpu.py's summary: Triton's best under 1-256 clients is one replica serving;
    # without it, the engine's best on the GPU
    for keys, what in (
        (("replica_words_per_min",), "one replica"),
        (("summary", "triton_best_words_per_min"), "Triton, best over 1-256 clients"),
        (("summary", "engine_best_words_per_min"), "engine alone, best batch (no Triton run)"),
    ):
        if (value := _dig(data, *keys)) is not None:
            return Figure(value, f"gpu/gpu.json: {'.'.join(keys)} = {value:,.0f} - {what}; {card}")
    best: dict[str, tuple[float, str]] = {}
    for path, value in _walk(data):
        if not path or "words_per_min" not in path[-1] or isinstance(value, bool):
            continue
        if not isinstance(value, int | float) or value <= 0:
            continue
        lowered = [p.lower() for p in path]
        if any(bad in p for p in lowered for bad in _NOT_OURS):
            continue
        group = "triton" if any("triton" in p for p in lowered) else "engine"
        if value > best.get(group, (0.0, ""))[0]:
            best[group] = (float(value), ".".join(path))
    for group in ("triton", "engine"):
        if group in best:
            value, where = best[group]
            return Figure(value, f"gpu/gpu.json: {where} = {value:,.0f} (best {group}); {card}")
    return None


def measured_kinds(
    results_dir: Path | None = None, settings: Settings | None = None
) -> dict[str, InstanceKind]:
    """``cpu``, ``gpu`` and ``gpu-spot`` with their words/min and prices.

    Prices are settings (``MTB_PRICE_CPU_PER_HOUR``, ``MTB_PRICE_GPU_PER_HOUR``,
    ``MTB_SPOT_DISCOUNT``). A spot instance is the same machine, so ``gpu-spot`` has the
    ``gpu`` kind's speed at the discounted price. ``MTB_COST_CPU_CORES`` prices a CPU
    instance of another size: the measured rate scaled by cores, then marked an estimate.
    """
    settings = settings if settings is not None else Settings.from_env()
    if results_dir is None:
        results_dir = settings.cost_results_dir
    results_dir = Path(results_dir)
    kinds: dict[str, InstanceKind] = {}

    found = cpu_candidates(results_dir)
    if found:
        fig = found[0]
        cpu = InstanceKind(CPU, fig.words_per_minute, settings.price_cpu_per_hour,
                           gpu=False, measured=True, source=fig.source)  # fmt: skip
        want = settings.cost_cpu_cores
        if want > 0 and fig.cores and want != fig.cores:
            cpu = replace(
                cpu,
                words_per_minute=fig.words_per_minute * want / fig.cores,
                measured=False,
                source=f"estimate: scaled linearly from {fig.cores} to {want} cores; {fig.source}",
            )
    else:
        wps = settings.throughput_wps if settings.throughput_wps > 0 else FALLBACK_WPS
        cpu = InstanceKind(CPU, wps * 60.0, settings.price_cpu_per_hour, gpu=False,
                           measured=False, source=f"estimate: no CPU figure in "
                           f"{results_dir}; {wps:g} words/s")  # fmt: skip
    kinds[CPU] = cpu

    fig = gpu_figure(results_dir)
    if fig is not None:
        gpu = InstanceKind(GPU, fig.words_per_minute, settings.price_gpu_per_hour,
                           gpu=True, measured=True, source=fig.source)  # fmt: skip
    else:
        gpu = InstanceKind(GPU, settings.cost_gpu_words_per_minute_estimate,
                           settings.price_gpu_per_hour, gpu=True, measured=False,
                           source=GPU_ESTIMATE_BASIS)  # fmt: skip
    kinds[GPU] = gpu
    spot_price = settings.price_gpu_per_hour * (1.0 - settings.spot_discount)
    kinds[GPU_SPOT] = replace(gpu, name=GPU_SPOT, price_per_hour=spot_price)
    return kinds
