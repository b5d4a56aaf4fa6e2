"""Helpers shared by the outage scenarios: a small backlog, a private server's stop and
start timed, and the check that every job completed exactly like a clean run.

A clean run is the in-process engine given the same text (the workers translate the same
segments with the same library, on the engine or through Triton), so "results equal a
clean run" needs no second stack."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from control_plane.text.chunking import Layout
from tests.functional.kafka_stack import KafkaStack
from tests.functional.L0_service.documents import document

OUTAGE_S = 30.0  # issue 10: "stopping PostgreSQL or Triton for 30 s"

# One worker task taking small batches of small chunks: the backlog takes a few seconds to
# work through, so the outage lands in the middle of it.
SLOW_LANE = {
    "MTB_CHUNK_WORDS": "150",
    "MTB_BATCH_WORDS": "300",
    "MTB_WORKERS": "1",
    "MTB_URGENT_WORKERS": "0",
}


@dataclass
class Submitted:
    job_id: str
    text: str
    chunks: int


def submit_backlog(stack: KafkaStack, jobs: int, words: int, seed: int) -> list[Submitted]:
    out = []
    for i in range(jobs):
        text = document(words, seed=seed + i)
        sub = stack.submit(text, ["normal", "high"][i % 2])
        out.append(Submitted(sub["job_id"], text, sub["chunk_count"]))
    return out


def chunks_done(stack: KafkaStack) -> int:
    return stack.sql("select count(*) from chunks where status = 'done'")[0][0]


def wait_some_done(stack: KafkaStack, total: int, at_least: int = 1, timeout: float = 120) -> int:
    """Until ``at_least`` chunks are done; returns how many are (fails if all are: the
    outage would no longer land mid-backlog)."""
    deadline = time.monotonic() + timeout
    while (done := chunks_done(stack)) < at_least:
        assert time.monotonic() < deadline, "the backlog made no progress before the outage"
        time.sleep(0.02)
    assert done < total, f"all {total} chunks were done before the outage"
    return done


def outage(stop: Callable[[], object], start: Callable[[], object], seconds: float) -> dict:
    """Stop a server, keep it down ``seconds`` (from the moment it is stopped), start it
    again; returns the timings."""
    t0 = time.monotonic()
    stop()
    stopped = time.monotonic()
    time.sleep(max(0.0, seconds - (stopped - t0)))
    t1 = time.monotonic()
    start()
    t2 = time.monotonic()
    return {"stop_s": stopped - t0, "down_s": t2 - t0, "start_s": t2 - t1, "back_at": t2}


def clean_run(local_engine, text: str) -> str:  # noqa: ANN001 - the engine fixture
    layout = Layout.parse(text, "en")
    return layout.render([t.text for t in local_engine.translate(layout.segments, "en", "pt")])


def assert_like_clean_run(
    stack: KafkaStack, backlog: list[Submitted], local_engine, timeout: float = 300
) -> float:  # noqa: ANN001
    """Every job completed (none failed), every chunk done and written once, no chunk
    error, and each result equals the clean run. Returns when the last job completed."""
    for sub in backlog:
        job = stack.wait(sub.job_id, timeout=timeout)
        assert job["status"] == "completed", job
    finished = time.monotonic()
    rows = stack.sql(
        "select status, count(*), max(writes), count(error) from chunks group by status"
    )
    total = sum(s.chunks for s in backlog)
    assert rows == [("done", total, 1, 0)], rows
    statuses = stack.sql("select status, count(*), count(error) from jobs group by status")
    assert statuses == [("completed", len(backlog), 0)], statuses
    for sub in backlog:
        assert stack.result(sub.job_id) == clean_run(local_engine, sub.text), sub.job_id
    return finished
