"""Workers batch segments across chunks and jobs, dedupe them, and fail jobs readably."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import select

from control_plane.db import Chunk
from control_plane.jobs.service import JobService, SubmitRequest
from control_plane.settings import Settings
from tests.unit.workers.parts import worker_parts


@pytest.fixture
async def parts(tmp_path):
    settings = Settings(data_dir=tmp_path, chunk_words=50, batch_words=1000, max_chunk_attempts=2)
    async with worker_parts(settings, "w@x.io") as built:
        yield built


async def test_one_engine_call_for_many_small_jobs(parts):
    settings, user, queue, jobs, engine, worker, finished = parts
    texts = ["Shared sentence. First job.", "Shared sentence. Second job.", "Third job here."]
    ids = []
    for i, text in enumerate(texts):
        prio = ["normal", "critical", "high"][i]
        job = await jobs.submit(SubmitRequest(user.id, text, "en", "pt", prio), "fake-enpt-1")
        ids.append(job.id)
    deliveries = await queue.consume(settings.batch_words, timeout=0.1)
    assert len(deliveries) == 3
    await worker.process(deliveries)
    assert len(engine.calls) == 1  # one batch across three jobs
    assert engine.calls[0].count("Shared sentence.") == 1  # deduplicated
    assert engine.calls[0][0] in ("Shared sentence.", "Second job.")  # critical first
    assert sorted(j.id for j in finished) == sorted(ids)
    done = await jobs.get(user.id, ids[0], texts=True)
    assert (
        done.status == "completed" and done.result_text == "sentence. Shared [pt] job. First [pt]"
    )


async def test_failures_retry_then_fail_readably(parts):
    settings, user, queue, jobs, engine, worker, finished = parts

    def broken(*args):
        raise RuntimeError("engine exploded")

    engine.translate = broken
    job = await jobs.submit(SubmitRequest(user.id, "Hello there.", "en", "pt"), "fake-enpt-1")
    for _ in range(settings.max_chunk_attempts):
        await worker.process(await queue.consume(1000, timeout=0.1))
    failed = await jobs.get(user.id, job.id)
    assert failed.status == "failed"
    assert "after 2 attempts" in failed.error and "engine exploded" in failed.error
    assert finished and finished[-1].status == "failed"
    assert await queue.consume(1000, timeout=0.05) == []


async def test_redelivered_chunk_is_written_once(parts):
    settings, user, queue, jobs, engine, worker, finished = parts
    job = await jobs.submit(SubmitRequest(user.id, "Only once.", "en", "pt"), "fake-enpt-1")
    (d,) = await queue.consume(1000, timeout=0.1)
    assert jobs.complete_chunk(job.id, 0, "x", 2) is not None
    assert jobs.complete_chunk(job.id, 0, "y", 2) is None  # idempotent
    await worker.process([d])  # a redelivery after the write: acked, no effect
    with jobs.db.session() as s:
        chunk = s.execute(select(Chunk).where(Chunk.job_id == job.id)).scalar_one()
    assert chunk.writes == 1 and chunk.result_text == "x"


async def test_reconciler_requeues_stale_chunks_once(parts):
    settings, user, queue, jobs, engine, worker, finished = parts
    job = await jobs.submit(SubmitRequest(user.id, "Lost publish.", "en", "pt"), "fake-enpt-1")
    (lost,) = await queue.consume(1000, timeout=0.1)
    await queue.ack(lost)  # as if the message vanished
    assert await jobs.requeue_stale(3600) == 0  # not stale yet
    assert await jobs.requeue_stale(0) == 1
    (again,) = await queue.consume(1000, timeout=0.1)
    assert again.message.job_id == job.id
    await worker.process([again])
    assert (await jobs.get(user.id, job.id)).status == "completed"
    assert await jobs.requeue_stale(0) == 0  # finished jobs are left alone


async def test_cancel_seen_through_the_database(parts):
    """A cancel made by another process (only in the DB) stops the worker's engine calls
    between batches."""
    settings, user, queue, jobs, engine, worker, finished = parts
    gate = threading.Event()
    plain = engine.translate

    def gated(segments, source, target):
        gate.wait(5)
        return plain(segments, source, target)

    engine.translate = gated
    text = " ".join(f"Sentence number {i}." for i in range(100))  # 4 batches of 32
    job = await jobs.submit(SubmitRequest(user.id, text, "en", "pt"), "v")
    deliveries = await queue.consume(10_000, timeout=0.1)
    running = asyncio.create_task(worker.process(deliveries))
    await asyncio.sleep(0.2)  # the first batch is in the engine
    other = JobService(jobs.db, queue, jobs.cache, settings)  # e.g. the API process
    await other.cancel(user.id, job.id)
    assert not jobs.is_cancelled(job.id)  # this process has not heard of it
    gate.set()
    await running
    assert len(engine.calls) == 1  # the remaining batches never ran
    assert (await jobs.get(user.id, job.id)).status == "cancelled"


async def test_unexpected_errors_requeue_then_give_up(parts):
    """A bug or a database hiccup mid-batch never strands chunks: they are handed back,
    and after max_chunk_attempts the job fails with a readable error."""
    settings, user, queue, jobs, engine, worker, finished = parts
    job = await jobs.submit(SubmitRequest(user.id, "Fragile.", "en", "pt"), "v")
    calls = []

    async def broken_fill(works):
        calls.append(1)
        raise KeyError("boom")

    worker._fill_from_cache = broken_fill
    task = asyncio.create_task(worker.run())
    for _ in range(100):
        if (await jobs.get(user.id, job.id)).status == "failed":
            break
        await asyncio.sleep(0.05)
    worker.stop()
    await asyncio.wait_for(task, 5)
    failed = await jobs.get(user.id, job.id)
    assert failed.status == "failed" and "giving up" in failed.error
    assert len(calls) == settings.max_chunk_attempts
    assert queue.inflight() == 0


async def test_estimates_can_be_refreshed_from_the_database(parts):
    """An API beside Kafka workers never sees a chunk finish: it re-reads the backlog and
    the throughput from the chunks table instead of trusting its own counters."""
    settings, user, queue, jobs, engine, worker, finished = parts
    text = " ".join(f"Sentence number {i} is right here." for i in range(60))
    job = await jobs.submit(SubmitRequest(user.id, text, "en", "pt", "high"), "fake-enpt-1")
    assert job.chunk_count >= 3
    jobs.pending_words["high"] = 10**6  # a counter that only ever grew
    await jobs.refresh_estimates()
    assert jobs.pending_words == {"critical": 0, "high": job.word_count, "normal": 0}
    seeded = jobs.throughput.wps
    while deliveries := await queue.consume(settings.batch_words, timeout=0.1):
        await worker.process(deliveries)
    jobs.throughput.wps = seeded  # forget what the worker measured in this process
    await jobs.refresh_estimates()
    assert jobs.pending_words == {"critical": 0, "high": 0, "normal": 0}
    assert jobs.throughput.wps > seeded  # the fake engine is far faster than the seed


async def test_protection_is_a_lane_and_spans_survive(parts):
    """The same text under two glossaries is two engine calls (the translation depends on
    the glossary); spans come back exactly; the outcomes are counted."""
    settings, user, queue, jobs, engine, worker, finished = parts
    text = "Save {count} files now. (2)"
    plain = await jobs.submit(SubmitRequest(user.id, text, "en", "pt"), "fake-enpt-1")
    glossed = await jobs.submit(
        SubmitRequest(user.id, text, "en", "pt", glossary={"files": "arquivos"}), "fake-enpt-1"
    )
    await worker.process(await queue.consume(settings.batch_words, timeout=0.1))
    # plain: masked; glossary: unmasked terms first (the fake reverses words, so the term
    # is missing), then masked
    assert engine.calls == [["Save X1 files now."], ["Save X1 files now."], ["Save X1 X2 now."]]
    a = await jobs.get(user.id, plain.id, texts=True)
    b = await jobs.get(user.id, glossed.id, texts=True)
    assert a.result_text == "now. files {count} Save [pt] (2)"
    assert b.result_text == "now. arquivos {count} Save [pt] (2)"
    metric = worker.metrics.segments_protected
    assert metric.labels("masked")._value.get() == 2  # noqa: SLF001
    assert metric.labels("passthrough")._value.get() == 2  # noqa: SLF001


@pytest.mark.parametrize(
    ("priority", "expected"),
    [("normal", ["normal", "high"]), ("critical", ["critical", "critical"])],
)
async def test_follow_up_rounds_run_at_high_priority_at_least(parts, priority, expected):
    """A call's second round (here: the glossary term did not survive the unmasked try)
    is a few texts the whole batch waits for: it goes at high priority at least, so it
    does not queue behind another worker task's whole call."""
    settings, user, queue, jobs, engine, worker, finished = parts
    seen: list[str] = []
    translate = worker.client.translate

    async def recording(texts, source, target, priority="normal", timeout=None):  # noqa: ANN001, ANN202
        seen.append(priority)
        return await translate(texts, source, target, priority=priority, timeout=timeout)

    worker.client.translate = recording
    job = await jobs.submit(
        SubmitRequest(user.id, "Save {count} files now.", "en", "pt", priority,
                      glossary={"files": "arquivos"}),
        "fake-enpt-1",
    )  # fmt: skip
    await worker.process(await queue.consume(settings.batch_words, timeout=0.1))
    assert len(engine.calls) == 2 and seen == expected
    done = await jobs.get(user.id, job.id, texts=True)
    assert done.result_text == "now. arquivos {count} Save [pt]"


async def test_a_batch_of_many_segments_lets_the_event_loop_run(parts, monkeypatch):
    """A chunk of one "word" can hold thousands of segments ("a。a。..."): grouping a
    batch's segments yields to the event loop every YIELD_SEGMENTS of them, so other
    tasks (the API's requests in the same process) run in between."""
    from control_plane.workers import worker as worker_module

    settings, user, queue, jobs, engine, worker, finished = parts
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    seen: dict[str, int] = {}
    translate, lanes = worker._translate, worker._translate_lanes

    async def spy_translate(works):  # noqa: ANN001, ANN202
        seen["start"] = ticks
        return await translate(works)

    async def spy_lanes(*args):  # noqa: ANN002, ANN202
        seen["grouped"] = ticks  # no await between the two but the loop's own yields
        return await lanes(*args)

    monkeypatch.setattr(worker, "_translate", spy_translate)
    monkeypatch.setattr(worker, "_translate_lanes", spy_lanes)
    n = 4 * worker_module.YIELD_SEGMENTS + 100
    text = "\n".join(f"s{i}." for i in range(n))  # n one-word segments, n words
    job = await jobs.submit(SubmitRequest(user.id, text, "en", "pt"), "fake-enpt-1")
    task = asyncio.create_task(ticker())
    try:
        while (await jobs.get(user.id, job.id)).status != "completed":
            await worker.process(await queue.consume(10 * n, timeout=0.1))
    finally:
        task.cancel()
    assert seen["grouped"] - seen["start"] >= n // worker_module.YIELD_SEGMENTS - 1
