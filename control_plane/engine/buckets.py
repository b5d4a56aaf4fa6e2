"""Batch shapes for the device-resident decoder loop (control_plane.engine.device_loop).

A GPU runs best when a loop's tensors keep one shape for many steps: buffers are
allocated once, kernels (and TensorRT engines, CUDA graphs) are picked once per shape. So
batch sizes are rounded up to powers of two ("buckets", at most 1024 sentences) and a
batch only changes shape when enough sentences have finished to fit the next smaller
bucket. Pure functions, so the policy is tested without a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_BUCKET = 1024


def bucket_for(n: int, max_bucket: int = MAX_BUCKET) -> int:
    """The smallest power of two >= ``n`` (1 for 0), capped at ``max_bucket``."""
    if n > max_bucket:
        raise ValueError(f"{n} rows do not fit the largest bucket ({max_bucket})")
    return 1 << max(0, int(n) - 1).bit_length()


def cands_bucket(n: int, least: int = 1024) -> int:
    """Output-layer columns for ``n`` shortlist candidates when shapes must stay fixed
    (CUDA graphs): the next power of two, at least ``least``, so a batch's shortlist
    union (about 600 to 20,000 columns) maps to one of few shapes."""
    return max(least, 1 << max(0, int(n) - 1).bit_length())


def lane_rows(n: int, max_batch: int, lanes: int) -> int:
    """Rows per batch for a call of ``n`` sentences on ``lanes`` lanes (the CPU host loop).

    ``max_batch`` cuts a small call into one batch: 20 sentences ran on one lane while
    the other idled, padded to the longest of all 20 (on the 2-core EPYC, 2026-12-01, such
    calls alone made 0.67 of a lane's share of a whole document's speed; 20 sentences of
    similar length 1.01). So a call gets at least one batch per lane, and its batches are
    of equal size (a 40-sentence call: 20 + 20, not 32 + 8): each lane takes one
    length-sorted share, and a small (critical) job ends in about half the time on two
    idle lanes. A call of many batches keeps ``max_batch`` rows, give or take the
    rounding that evens them out. The output does not depend on the batch.
    """
    if n <= 0:
        return max(1, max_batch)
    batches = max(-(-n // max(1, max_batch)), min(max(1, lanes), n))
    return -(-n // batches)


def budget_slices(sizes: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """``(lo, hi)`` slices covering ``sizes`` in order, each summing to at most ``budget``
    (an item larger than ``budget`` alone in its slice). For calls into C code that
    holds the GIL (SentencePiece over a whole engine call): bounded pieces let the other
    threads run in between."""
    slices: list[tuple[int, int]] = []
    lo, total = 0, 0
    for i, size in enumerate(sizes):
        if i > lo and total + size > budget:
            slices.append((lo, i))
            lo, total = i, 0
        total += size
    if lo < len(sizes):
        slices.append((lo, len(sizes)))
    return slices


def plan_batches(lengths: Sequence[int], max_batch: int, batch_tokens: int) -> list[list[int]]:
    """Indices into ``lengths`` grouped into batches, shortest sentences first.

    Sorting by length keeps padding low (a batch pads to its longest sentence); a batch
    closes at ``max_batch`` sentences or when its padded size (longest length x rows)
    would pass ``batch_tokens``, so long sentences go in small batches. The host loop
    uses the same plan (bergamot_engine.translate_ids), which keeps both loops' batches
    alike.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        n = len(batches[-1]) if batches else 0
        if not n or n >= max_batch or lengths[i] * (n + 1) > batch_tokens:
            batches.append([])
        batches[-1].append(i)
    return batches


def compaction(active: np.ndarray, bucket: int) -> np.ndarray | None:
    """Rows to keep when the batch should shrink, else None.

    ``active``: a boolean per row of the current bucket (True: still decoding). The
    policy: compact only when the active rows fit a smaller bucket (at most half the
    current one), never on every finished row. Finished rows left in place cost compute
    but no copying; compaction copies every per-row tensor (cross-attention keys/values
    of the whole source, states, masks) once and changes the shape (new buffers, and on a
    GPU a new kernel choice or CUDA graph). Halving bounds the wasted rows to under half
    the bucket while copying at most log2(bucket) times per batch.

    Returns the kept row indices padded to the new bucket by repeating the first one (a
    padded row decodes a copy of a real sentence, so it never produces NaNs, and its
    output is ignored). No active rows: an empty array (the batch is done).
    """
    rows = np.flatnonzero(active)
    if len(rows) == 0:
        return rows
    new = bucket_for(len(rows), bucket)
    if new >= bucket:
        return None
    return pad_rows(rows, new)


def pad_rows(rows: np.ndarray, bucket: int) -> np.ndarray:
    """``rows`` extended to ``bucket`` entries by repeating the first row."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) > bucket:
        raise ValueError(f"{len(rows)} rows do not fit a bucket of {bucket}")
    return np.concatenate([rows, np.full(bucket - len(rows), rows[0], dtype=np.int64)])
