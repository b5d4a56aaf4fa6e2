"""A job's chunks carry shares of its word_count: a token longer than a chunk is cut over
several chunks and each piece counts as a word of its own, so summing the chunks' own
counts billed and showed more words than the job has ("a" * 50000: 1 word, 13 chunks).
words_processed never passes word_count, progress never passes 1.0, and a job served
from the cache is billed for its word_count, no more."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from control_plane.api.routes.jobs import job_view
from control_plane.db import Chunk
from control_plane.jobs.service import SubmitRequest, apportion
from control_plane.settings import Settings
from tests.unit.workers.parts import worker_parts

LONG_TOKENS = {
    "a run": "a" * 50_000,
    "é run": "é" * 60_000,
    "words and a run": "x y " + "é" * 9_000,
}


@pytest.fixture
async def parts(tmp_path):
    settings = Settings(data_dir=tmp_path, chunk_words=4, batch_words=4, price_cpu_per_hour=3600.0)
    async with worker_parts(settings, "shares@x.io") as got:
        yield got


def test_apportion_keeps_the_total_and_the_proportions() -> None:
    assert apportion([1, 1], 1) == [1, 0]
    assert apportion([1] * 13, 1) == [1] + [0] * 12
    assert apportion([4, 4, 2], 10) == [4, 4, 2]  # counts that agree stay as they are
    assert apportion([3, 1, 1], 4) == [2, 1, 1]  # largest remainders
    assert apportion([0, 0], 3) == [2, 1]  # no counts: spread evenly
    assert apportion([0, 0], 0) == [0, 0]
    assert apportion([], 0) == []
    for counts, total in (([7, 1, 1, 1], 3), ([2, 5, 9], 40), ([1] * 74, 1)):
        shares = apportion(counts, total)
        assert sum(shares) == total and min(shares) >= 0


async def _chunk_counts(jobs, job_id: str) -> list[int]:  # noqa: ANN001 - JobService
    def read() -> list[int]:
        with jobs.db.session() as session:
            return list(
                session.execute(
                    select(Chunk.word_count)
                    .where(Chunk.job_id == job_id)
                    .order_by(Chunk.chunk_index)
                ).scalars()
            )

    return await jobs.db.run(read)


async def _run_one_by_one(parts, job_id: str) -> None:  # noqa: ANN001
    """Every chunk in a batch of its own, checking the job's figures after each."""
    settings, user, queue, jobs, engine, worker, finished = parts
    while deliveries := await queue.consume(10_000, timeout=0.2):
        for d in deliveries:
            await worker.process([d])
            job = await jobs.get(user.id, job_id)
            assert job.words_processed <= job.word_count
            assert job_view(job).progress <= 1.0


@pytest.mark.parametrize("name", list(LONG_TOKENS))
async def test_words_processed_never_passes_word_count(parts, name):
    settings, user, queue, jobs, engine, worker, finished = parts
    text = LONG_TOKENS[name]
    job = await jobs.submit(SubmitRequest(user.id, text, "en", "pt"), "fake-enpt-1")
    assert job.chunk_count > 2  # the token is cut over chunks
    counts = await _chunk_counts(jobs, job.id)
    assert sum(counts) == job.word_count
    assert sum(jobs.pending_words.values()) == job.word_count
    await _run_one_by_one(parts, job.id)
    done = await jobs.get(user.id, job.id)
    assert done.status == "completed"
    assert done.words_processed == done.word_count


async def test_a_cached_job_is_billed_its_word_count(parts):
    """All of the second job comes from the cache: billed word_count words of engine time
    at the measured throughput (its estimate), not one word per piece of the token."""
    settings, user, queue, jobs, engine, worker, finished = parts
    text = "a" * 50_000
    first = await jobs.submit(SubmitRequest(user.id, text, "en", "pt"), "fake-enpt-1")
    await _run_one_by_one(parts, first.id)
    second = await jobs.submit(SubmitRequest(user.id, text, "en", "pt"), "fake-enpt-1")
    assert second.cached_segments == second.segment_count > second.chunk_count > 2
    calls = len(engine.calls)
    await _run_one_by_one(parts, second.id)
    assert len(engine.calls) == calls  # served from the cache
    done = await jobs.get(user.id, second.id)
    assert done.words_processed == done.word_count == 1
    expected = jobs.cost_for_seconds(1 / jobs.words_per_second, 1, "normal")
    assert done.cost_usd == pytest.approx(expected)
    assert done.cost_usd == pytest.approx(done.estimated_cost)


async def test_a_late_overcounting_chunk_is_capped(parts):
    """A chunk counted before its count was a share (an older row) cannot push
    words_processed past word_count."""
    settings, user, queue, jobs, engine, worker, finished = parts
    job = await jobs.submit(SubmitRequest(user.id, "a" * 50_000, "en", "pt"), "v")
    await jobs.db.run(jobs.claim_chunk, job.id, 0)
    await jobs.db.run(jobs.complete_chunk, job.id, 0, "x", 5)
    got = await jobs.get(user.id, job.id)
    assert got.status == "processing" and got.words_processed == got.word_count == 1
