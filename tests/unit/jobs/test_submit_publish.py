"""A submission's chunk messages: their words are counted once, in the planning thread,
and publishing hundreds of them lets the event loop run in between (an 8 MiB submission
held it for tens of ms counting and publishing its chunks)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import select

from control_plane.auth import create_user
from control_plane.cache import SegmentCache
from control_plane.db import Chunk, Database
from control_plane.jobs import service
from control_plane.jobs.service import PUBLISH_BATCH, JobService, SubmitRequest
from control_plane.queue import MemoryChunkQueue
from control_plane.settings import Settings


@pytest.fixture
async def parts(tmp_path):
    settings = Settings(data_dir=tmp_path, chunk_words=4, batch_words=4)
    db = Database(settings.effective_database_url)
    db.migrate()
    user, _ = create_user(db.engine, "p@x.io", "enterprise")
    queue = MemoryChunkQueue(aging_s=0)
    yield settings, db, user, queue, JobService(db, queue, SegmentCache(db.engine), settings)
    db.close()


async def test_chunk_words_counted_once_off_the_loop(parts, monkeypatch):
    settings, db, user, queue, jobs = parts
    loop_thread = threading.get_ident()
    counted: list[bool] = []  # True: counted on the event loop's thread
    real = service.chunk_words

    def spy(text: str, fmt: str) -> int:
        counted.append(threading.get_ident() == loop_thread)
        return real(text, fmt)

    monkeypatch.setattr(service, "chunk_words", spy)
    text = "\n\n".join(f"Chunk number {i} here." for i in range(10))
    job = await jobs.submit(SubmitRequest(user.id, text, "en", "pt"), "v")
    assert job.chunk_count == 10
    assert counted == [False] * 10  # once per chunk, none on the loop
    messages = [d.message for d in await queue.consume(10_000, timeout=0.5)]
    with db.session() as session:
        rows = session.exec(select(Chunk.chunk_index, Chunk.word_count)).all()
    assert sorted((m.chunk_index, m.word_count) for m in messages) == sorted(rows)
    assert [m.word_count for m in messages] == [4] * 10
    assert jobs.pending_words["normal"] == 40


async def test_publishing_many_chunks_yields_to_the_loop(parts, monkeypatch):
    settings, db, user, queue, jobs = parts
    ticks = 0
    at_publish: list[int] = []  # the ticker's count when each message was published

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    real = queue.publish

    async def publish(message) -> None:  # noqa: ANN001
        at_publish.append(ticks)
        await real(message)

    monkeypatch.setattr(queue, "publish", publish)
    n = 3 * PUBLISH_BATCH + 5
    text = "\n\n".join(f"Part {i} of it." for i in range(n))
    task = asyncio.create_task(ticker())
    try:
        job = await jobs.submit(SubmitRequest(user.id, text, "en", "pt"), "v")
    finally:
        task.cancel()
    assert job.chunk_count == n and len(at_publish) == n
    # the loop ran other tasks between batches, never inside one
    batches = [at_publish[i : i + PUBLISH_BATCH] for i in range(0, n, PUBLISH_BATCH)]
    assert all(len(set(b)) == 1 for b in batches), batches
    assert all(a[0] < b[0] for a, b in zip(batches, batches[1:], strict=False)), batches
