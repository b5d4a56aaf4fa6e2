"""`python -m bench triton --parts sustained` (the worker's load on Triton against the
engine alone: it chose the CPU config's instances x lanes) runs end to end on the
session's tritonserver, small: two callers, calls of ~2,000 words, one 10k-word
document, one round. The figures themselves are the benchmark's business, not a test's."""

from __future__ import annotations

import argparse
import os
import time

from bench.common import machine
from bench.triton import sustained_rounds, sustained_table
from tests.functional.L0_triton.test_triton import client_for, model_stats


async def test_sustained_part_measures_both_paths(server, local_engine):
    c = await client_for(server.url, triton_request_segments=16)
    args = argparse.Namespace(
        sustained_words=10_000, sustained_callers=2, call_words=2_000, rounds=1
    )
    before = await model_stats(server.url)
    out = await sustained_rounds(local_engine, c, args, server.pid)
    after = await model_stats(server.url)
    await c.close()

    assert 9_000 <= out["words"] <= 11_000 and 4 <= out["calls"] <= 6
    assert out["callers"] == 2 and len(out["rounds"]["engine"]) == 1
    # the calls went through the server, cut into requests of 16 segments and batched
    requests, executions = after[0] - before[0], after[1] - before[1]
    assert requests >= 4 * out["calls"] and 0 < executions < requests
    for side in ("engine", "triton"):
        assert out[side]["words_per_min"] > 0
        busy = out[side]["cores_busy"]  # the server's own CPU (its stubs are children)
        assert busy is not None and 0 < busy <= len(os.sched_getaffinity(0)) + 0.5
    assert out["triton_over_engine"] == round(
        out["triton"]["words_per_min"] / out["engine"]["words_per_min"], 3
    )
    report = {
        "sustained": out,
        "config": {"instances": 1, "threads": 2, "max_batch_size": 64},
        "request_segments": 16,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    table = sustained_table(report)
    assert f"Triton / engine alone: {out['triton_over_engine']}x" in table
    assert f"| through Triton | {out['triton']['words_per_min']:,} |" in table
