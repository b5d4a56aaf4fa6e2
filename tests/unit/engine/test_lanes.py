"""Lanes run batches side by side, the most urgent caller's first."""

from __future__ import annotations

import threading
import time

import pytest

from control_plane.engine.lanes import Lanes
from control_plane.engine.onnx_session import plan_lanes


def test_waiting_batches_run_most_urgent_first():
    lanes = Lanes(1)
    gate, order = threading.Event(), []
    blocker = threading.Thread(target=lanes.run_all, args=([gate.wait],))
    blocker.start()
    time.sleep(0.05)  # the only lane is now busy
    callers = [
        threading.Thread(target=lanes.run_all, args=([lambda n=name: order.append(n)], rank))
        for name, rank in [("normal-1", 2), ("normal-2", 2), ("critical", 0), ("high", 1)]
    ]
    for t in callers:
        t.start()
        time.sleep(0.02)  # arrival order: normal-1, normal-2, critical, high
    gate.set()
    for t in [blocker, *callers]:
        t.join(5)
    assert order == ["critical", "high", "normal-1", "normal-2"]


def test_batches_run_in_parallel_and_errors_reach_the_caller():
    lanes = Lanes(2)
    both = threading.Barrier(2, timeout=5)  # passes only if two batches run at once
    lanes.run_all([both.wait, both.wait])

    def boom() -> None:
        raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        lanes.run_all([lambda: None, boom])
    lanes.run_all([lambda: None])  # the lanes survive a failed batch


def test_plan_lanes():
    assert plan_lanes(threads=2) == (2, 1)
    assert plan_lanes(threads=16) == (8, 2)
    assert plan_lanes(threads=4, lanes=1) == (1, 4)
    assert plan_lanes(threads=8, gpu=True) == (4, 8)  # host work of one beside another's steps
    assert plan_lanes(threads=8, lanes=2, gpu=True) == (2, 8)  # asked for: host work overlaps


def test_a_call_hands_its_longest_batches_to_the_lanes_first():
    """Longest-processing-time first: a call's lanes end together on short batches
    instead of one lane finishing the longest batch while the other waits."""
    from types import SimpleNamespace

    import numpy as np

    from control_plane.engine.bergamot_engine import BergamotModel

    started: list[int] = []

    def run_batch(sources, batch, out):  # noqa: ANN001
        started.append(max(len(sources[i]) for i in batch))
        for i in batch:
            out[i] = ([len(sources[i])], 0.0)

    model = SimpleNamespace(
        max_batch=2, batch_tokens=10_000, _lanes=Lanes(1), _run_batch=run_batch,
        lanes=1, _device=None, beam_size=1,
    )  # fmt: skip
    lengths = [5, 40, 12, 3, 25, 8]
    out = BergamotModel.translate_ids(model, [np.zeros(n, dtype=np.int64) for n in lengths])
    assert started == sorted(started, reverse=True) and started[0] == 40
    assert [o[0][0] for o in out] == lengths  # every sentence's result in its own slot
