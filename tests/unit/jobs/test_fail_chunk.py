"""A late failure never overwrites a finished chunk (issue 10, item 4): ``fail_chunk`` only
fails a chunk that is still queued or processing, and then its job."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from control_plane.cache import SegmentCache
from control_plane.db import Chunk, Database
from control_plane.jobs.service import JobService, SubmitRequest
from control_plane.queue import MemoryChunkQueue
from control_plane.settings import Settings


@pytest.fixture
async def service(tmp_path):
    settings = Settings(data_dir=tmp_path, chunk_words=5)
    db = Database(settings.effective_database_url)
    db.migrate()
    from control_plane.auth import create_user

    user, _ = create_user(db.engine, "f@x.io", "enterprise")
    jobs = JobService(db, MemoryChunkQueue(aging_s=0), SegmentCache(db.engine), settings)
    yield jobs, user
    db.close()


def _chunks(jobs, job_id):
    with jobs.db.session() as s:
        rows = s.execute(select(Chunk).where(Chunk.job_id == job_id).order_by(Chunk.chunk_index))
        return [(c.status, c.error, c.result_text) for c in rows.scalars()]


async def test_late_failure_leaves_a_done_chunk_and_its_job_alone(service):
    jobs, user = service
    text = "One two three four five. Six seven eight nine ten."
    job = await jobs.submit(SubmitRequest(user.id, text, "en", "pt"), "v")
    assert job.chunk_count == 2
    assert jobs.complete_chunk(job.id, 0, "um ", 5) is None  # one of two
    assert jobs.fail_chunk(job.id, 0, "late failure") is None  # chunk 0 is done
    assert _chunks(jobs, job.id)[0] == ("done", None, "um ")
    assert (await jobs.get(user.id, job.id)).status in ("queued", "processing", "running")

    assert jobs.complete_chunk(job.id, 1, "dois", 5) is not None  # the job completes
    assert jobs.fail_chunk(job.id, 1, "later still") is None
    done = await jobs.get(user.id, job.id, texts=True)
    assert done.status == "completed" and done.error is None and done.result_text == "um dois"
    assert [c[0] for c in _chunks(jobs, job.id)] == ["done", "done"]


async def test_failure_of_an_active_chunk_fails_the_job(service):
    jobs, user = service
    job = await jobs.submit(SubmitRequest(user.id, "Hello there.", "en", "pt"), "v")
    failed = jobs.fail_chunk(job.id, 0, "translation failed after 3 attempts: boom")
    assert failed is not None and failed.status == "failed" and "boom" in failed.error
    assert _chunks(jobs, job.id) == [("failed", "translation failed after 3 attempts: boom", None)]
    assert jobs.fail_chunk(job.id, 0, "again") is None  # already failed: no second change
