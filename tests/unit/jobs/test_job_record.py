"""The design's job record: cost and confidence summed over every worker that touched a
job, retries counted, the instance named; reads that must not load job texts."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from control_plane.auth import create_user
from control_plane.cache import SegmentCache
from control_plane.db import Database
from control_plane.inference import LocalInferenceClient
from control_plane.jobs.service import JobService, SubmitRequest
from control_plane.metrics import Metrics
from control_plane.queue import MemoryChunkQueue
from control_plane.settings import Settings
from control_plane.workers import Worker
from tests.unit.api.fake_engine import FakeEngine


@pytest.fixture
async def parts(tmp_path):
    settings = Settings(data_dir=tmp_path, chunk_words=4, batch_words=4, price_cpu_per_hour=3600.0)
    db = Database(settings.effective_database_url)
    db.migrate()
    user, _ = create_user(db.engine, "r@x.io", "enterprise")
    queue = MemoryChunkQueue(aging_s=0)
    jobs = JobService(db, queue, SegmentCache(db.engine), settings)
    yield settings, db, user, queue, jobs
    db.close()


async def test_cost_and_confidence_sum_over_workers(parts):
    """Two workers (as in two processes) each translate one chunk: the job's cost is both
    engine times, its confidence the word-weighted mean of both chunks' segments."""
    settings, db, user, queue, jobs = parts
    text = "One two three four.\n\nFive six seven eight."
    job = await jobs.submit(SubmitRequest(user.id, text, "en", "pt"), "fake-enpt-1")
    assert job.chunk_count == 2 and job.content_hash and len(job.content_hash) == 64
    engines = [FakeEngine(delay_s=0.05), FakeEngine(delay_s=0.15)]
    workers = [
        Worker(f"w{i}", queue, jobs, LocalInferenceClient(engine=e), Metrics(), settings)
        for i, e in enumerate(engines)
    ]
    for w in workers:
        await w.process(await queue.consume(settings.batch_words, timeout=0.5))
    done = await jobs.get(user.id, job.id, texts=True)
    assert done.status == "completed"
    assert done.result_text == "four. three two One [pt]\n\neight. seven six Five [pt]"
    # price_cpu_per_hour 3600: one engine-second costs 1 USD; the workers took >= 0.05 and
    # >= 0.15 s, so the sum counts both (only the finishing worker's share would be < 0.2)
    assert done.cost_usd >= 0.2 - 1e-3
    assert done.confidence_score == pytest.approx(0.9)
    assert done.assigned_instance.endswith("/w1 -> local engine")
    assert done.processing_time_ms is not None and done.processing_time_ms >= 150
    assert done.words_per_minute == pytest.approx(8 * 60_000 / done.processing_time_ms, rel=0.01)
    assert done.retry_count == 0


async def test_retry_count_counts_claims_after_the_first(parts):
    settings, db, user, queue, jobs = parts
    job = await jobs.submit(SubmitRequest(user.id, "One two.", "en", "pt"), "fake-enpt-1")
    for _ in range(3):  # a crash after each claim: the chunk is taken again
        assert await db.run(jobs.claim_chunk, job.id, 0) is not None
    assert (await jobs.get(user.id, job.id)).retry_count == 2


async def test_reads_never_load_job_texts(parts):
    """Status, listing, cancel, recovery and the reconciler read no source/result text
    (a 100-job list of 8 MiB jobs must not pull 1.6 GiB); the result endpoint does."""
    settings, db, user, queue, jobs = parts
    ids = [
        (await jobs.submit(SubmitRequest(user.id, f"Job {i} text here.", "en", "pt"), "v")).id
        for i in range(3)
    ]
    statements: list[str] = []

    def record(conn, cursor, statement, *args):  # noqa: ANN001
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        job = await jobs.get(user.id, ids[0])
        rows, total = await jobs.list(user.id, 10, 0)
        assert total == 3 and len(rows) == 3
        assert await jobs.recover() == 3
        assert await jobs.requeue_stale(0.0) == 3
        await jobs.cancel(user.id, ids[1])
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert reads and not [s for s in reads if "source_text" in s or "result_text" in s]
        statements.clear()
        full = await jobs.get(user.id, ids[0], texts=True)
        assert full.source_text == "Job 0 text here."
        assert any("source_text" in s for s in statements)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert job.word_count == 4
