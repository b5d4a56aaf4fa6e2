"""One in-process worker over a SQLite database, a memory queue and a fake engine."""

from __future__ import annotations

from contextlib import asynccontextmanager

from control_plane.auth import create_user
from control_plane.cache import SegmentCache
from control_plane.db import Database
from control_plane.inference import LocalInferenceClient
from control_plane.jobs.service import JobService
from control_plane.metrics import Metrics
from control_plane.queue import MemoryChunkQueue
from control_plane.settings import Settings
from control_plane.workers import Worker
from tests.unit.api.fake_engine import FakeEngine


@asynccontextmanager
async def worker_parts(settings: Settings, email: str):
    """(settings, user, queue, jobs, engine, worker, finished jobs), closed afterwards."""
    db = Database(settings.effective_database_url)
    db.migrate()
    user, _ = create_user(db.engine, email, "enterprise")
    queue = MemoryChunkQueue(aging_s=0)
    finished = []

    async def on_finished(job):
        finished.append(job)

    jobs = JobService(db, queue, SegmentCache(db.engine), settings, on_finished=on_finished)
    engine = FakeEngine()
    worker = Worker("w", queue, jobs, LocalInferenceClient(engine=engine), Metrics(), settings)
    try:
        yield settings, user, queue, jobs, engine, worker, finished
    finally:
        db.close()
