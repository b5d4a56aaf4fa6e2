"""``MTB_PRECISION=auto``: int8 or fp32, whichever this machine runs faster, measured.

Measured rather than read from CPU flags: on this project's 2-core VMs int8 won on one
("AMD EPYC", 2026-11-26: 268,762 against 203,873 words/min at batch 8) and lost on another
that also calls itself "AMD EPYC" but has AVX2 without AVX-512 or VNNI (2026-12-01, bench
stack's engine alone, alternating: fp32 179,970 / 159,511, int8 125,000 / 118,676
words/min). ONNX Runtime's 8-bit kernels depend on VNNI/AVX-512 and its fp32 ones on FMA,
and whether int8's smaller matrices pay for its quantisation steps depends on the model's
shapes too, so a rule would be a guess. A few seconds at the first start settle it; the
answer is kept in the model store per CPU, ONNX Runtime version, cores and model
(``.precision-auto.json``), so later starts read it. Where fp16 graphs run on a GPU, auto
is fp16 and nothing is measured.

Processes that open one store at once (Triton's normal and urgent model stubs, a service
and its workers) measure under one lock on the store: the first measures, the others wait
and read its answer. Measuring side by side would slow both measurements and, near a tie,
could load int8 in one process and fp32 in the other, so one pair's translations (and
their cache key, the model version) would depend on the priority that asked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

from control_plane.cores import usable_cores
from control_plane.engine.store import store_lock

log = logging.getLogger(__name__)

CANDIDATES = ("int8", "fp32")  # the CPU precisions, int8 first: smaller, wins ties
TIE = 0.05  # fp32 must be this much faster to be chosen (int8 takes half the memory)
CACHE_FILE = ".precision-auto.json"
LOCK_FILE = ".precision-auto.lock"
# plain sentences of everyday software text; numbered so that each batch row differs
SENTENCES = (
    "The file could not be opened because it is in use by another program.",
    "Click the button below to download your report.",
    "Your password must contain at least eight characters.",
    "We will send you an email when your order has shipped.",
    "Please restart the application to apply the new settings.",
    "The meeting has been moved to Thursday afternoon.",
    "Do you want to save the changes you made to this document?",
    "This feature is not available in your country yet.",
    "Select the folder where the backup should be stored.",
    "Thank you for your patience while we review your request.",
    "An update is available and will be installed tonight.",
    "The connection to the server was lost; trying again in a minute.",
)


def cpu_key() -> str:
    """What the answer depends on: the CPU model and its vector extensions, the cores this
    process may use and ONNX Runtime's version (its kernels change between releases)."""
    import onnxruntime as ort

    model, flags = platform.processor(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags":
                flags = " ".join(sorted(f for f in value.split() if "avx" in f or "amx" in f))
                break
    except OSError:  # not Linux
        pass
    blob = f"{model}|{flags}|{usable_cores()}|{ort.__version__}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def gpu_fp16(precisions: dict) -> bool:
    from control_plane.engine.onnx_session import uses_gpu

    return "fp16" in precisions and uses_gpu("fp16")


def measure(
    load: Callable[[str], object], precisions: list[str], rounds: int = 2
) -> dict[str, float]:
    """Words per second of each precision's model (``load(precision)``) on the same
    batch, best of ``rounds``, the precisions alternating so that a machine's drift
    falls on both."""
    texts = [f"{s} ({i})" for i in range(6) for s in SENTENCES]
    words = sum(len(t.split()) for t in texts)
    models = {p: load(p) for p in precisions}
    for model in models.values():
        model.translate(texts[:8])  # warm-up: first-run allocations, lazy graph set-up
    best = dict.fromkeys(precisions, 0.0)
    for _ in range(rounds):
        for p, model in models.items():
            t0 = time.perf_counter()
            model.translate(texts)
            best[p] = max(best[p], words / (time.perf_counter() - t0))
    return best


def choose(speeds: dict[str, float]) -> str:
    """The fastest, except that fp32 must beat int8 by ``TIE`` to be chosen."""
    fastest = max(speeds, key=speeds.get)
    if fastest != "int8" and "int8" in speeds and speeds[fastest] < speeds["int8"] * (1 + TIE):
        return "int8"
    return fastest


def resolve(root: Path, folder: Path, meta: dict, load: Callable[[str], object]) -> str:
    """The precision ``auto`` means for the store at ``root``, measured on the model in
    ``folder`` (its ``meta``) with ``load(precision)`` where the store has no answer for
    this machine yet."""
    exported = meta.get("precisions") or {}
    if gpu_fp16(exported):
        return "fp16"
    candidates = [p for p in CANDIDATES if p in exported]
    if len(candidates) < 2:
        return candidates[0] if candidates else "int8"
    key = f"{cpu_key()}|{meta.get('model_version', folder.name)}"
    with store_lock(root, LOCK_FILE):
        known = _read(root / CACHE_FILE)
        if isinstance(known.get(key), dict) and known[key].get("precision") in candidates:
            return known[key]["precision"]
        t0 = time.perf_counter()
        speeds = measure(load, candidates)
        chosen = choose(speeds)
        log.info(
            "precision auto: %s (words/s measured on %s in %.1f s: %s)",
            chosen,
            folder.name,
            time.perf_counter() - t0,
            ", ".join(f"{p} {v:,.0f}" for p, v in speeds.items()),
        )
        known[key] = {"precision": chosen, "words_per_s": {p: round(v) for p, v in speeds.items()}}
        _write(root / CACHE_FILE, known)
    return chosen


def _read(path: Path) -> dict:
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _write(path: Path, known: dict) -> None:
    """Replace the file whole (a reader never sees half of it); a read-only store (an
    image's baked models) keeps nothing and the next start measures again."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError as exc:
        log.info("precision auto: not kept (%s)", exc)
        tmp.unlink(missing_ok=True)
