"""Outages delay jobs, they never fail them (issue 10, item 4): errors that say a dependency
is down (database, broker, inference backend) are told apart from errors of the content;
the worker keeps its batch and retries without spending attempts, and holds the queue so
no worker takes new work meanwhile. Content errors keep the attempt limit."""

from __future__ import annotations

import asyncio
import sqlite3

import psycopg
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError
from sqlalchemy import select
from sqlalchemy.exc import DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from control_plane.db import Chunk
from control_plane.db.database import is_database_unavailable
from control_plane.engine.base import UnsupportedPair
from control_plane.inference.base import InferenceUnavailable
from control_plane.jobs.service import SubmitRequest
from control_plane.settings import Settings
from control_plane.workers.worker import is_infrastructure_error
from tests.unit.workers.parts import worker_parts


def _pg_down() -> OperationalError:
    orig = psycopg.OperationalError("connection failed: Connection refused")
    return OperationalError("SELECT 1", {}, orig)


def _caused(outer: BaseException, cause: BaseException) -> BaseException:
    try:
        raise outer from cause
    except BaseException as exc:  # noqa: BLE001 - building a chained exception
        return exc


# ------------------------------------------------------------------ classification

INFRA = [
    pytest.param(InferenceUnavailable("Triton at x: connection: failed to connect"), id="triton"),
    pytest.param(_pg_down(), id="pg-operational"),
    pytest.param(
        InterfaceError("SELECT 1", {}, psycopg.InterfaceError("connection is closed")),
        id="pg-interface",
    ),
    pytest.param(psycopg.OperationalError("server closed the connection"), id="psycopg-raw"),
    pytest.param(
        OperationalError("UPDATE", {}, sqlite3.OperationalError("database is locked")),
        id="sqlite-locked",
    ),
    pytest.param(DisconnectionError("gone"), id="pool-disconnect"),
    pytest.param(PoolTimeout("QueuePool limit reached"), id="pool-timeout"),
    pytest.param(ConnectionRefusedError(111, "refused"), id="refused"),
    pytest.param(KafkaConnectionError("broker away"), id="kafka-connection"),
    pytest.param(KafkaTimeoutError(), id="kafka-timeout"),
    pytest.param(_caused(RuntimeError("batch failed"), _pg_down()), id="wrapped-db"),
    pytest.param(_caused(KeyError("x"), InferenceUnavailable("circuit open")), id="wrapped-triton"),
]
CONTENT = [
    pytest.param(RuntimeError("Triton at x: INTERNAL model failed on this input"), id="model"),
    pytest.param(UnsupportedPair("en", "xx", [("en", "pt")]), id="pair"),
    pytest.param(TimeoutError("Triton at x: deadline exceeded"), id="deadline"),
    pytest.param(ValueError("bad segment"), id="invalid"),
    pytest.param(
        OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: jobs")),
        id="sqlite-bug",
    ),
    pytest.param(IntegrityError("INSERT", {}, psycopg.IntegrityError("dup")), id="integrity"),
    pytest.param(MessageSizeTooLargeError(), id="kafka-not-retriable"),
    pytest.param(KeyError("boom"), id="bug"),
]


@pytest.mark.parametrize("exc", INFRA)
def test_infrastructure_errors(exc):
    assert is_infrastructure_error(exc)


@pytest.mark.parametrize("exc", CONTENT)
def test_content_errors(exc):
    assert not is_infrastructure_error(exc)


def test_database_unavailable_helper():
    assert is_database_unavailable(_pg_down())
    assert not is_database_unavailable(None)
    assert not is_database_unavailable(InferenceUnavailable("triton"))  # not the database's


# ------------------------------------------------------------------ the worker in an outage


@pytest.fixture
async def parts(tmp_path):
    settings = Settings(
        data_dir=tmp_path,
        chunk_words=50,
        batch_words=1000,
        max_chunk_attempts=2,
        outage_backoff_s=0.01,
        outage_backoff_max_s=0.05,
    )
    async with worker_parts(settings, "o@x.io") as built:
        yield built


async def _until(pred, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await pred():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def _status(jobs, user, job_id) -> str:
    return (await jobs.get(user.id, job_id)).status


async def test_inference_outage_delays_never_fails(parts):
    """The engine is unavailable for many more tries than max_chunk_attempts: the job
    waits, then completes; no attempt was spent and new work was held back meanwhile."""
    settings, user, queue, jobs, engine, worker, finished = parts
    plain = engine.translate
    down = {"left": 8}
    held_seen = []

    def flaky(segments, source, target):
        held_seen.append(queue.held())
        if down["left"] > 0:
            down["left"] -= 1
            raise InferenceUnavailable("Triton at x: connection: failed to connect")
        return plain(segments, source, target)

    engine.translate = flaky
    first = await jobs.submit(SubmitRequest(user.id, "Before the outage.", "en", "pt"), "v")
    task = asyncio.create_task(worker.run())
    await _until(lambda: asyncio.sleep(0, queue.held()))
    # submitted during the outage: stays queued (back-pressure), not taken by the worker
    later = await jobs.submit(SubmitRequest(user.id, "During the outage.", "en", "pt"), "v")
    assert queue.depth()["normal"] == 1
    await _until(lambda: _status_is(jobs, user, later.id, "completed"))
    worker.stop()
    await asyncio.wait_for(task, 5)
    assert await _status(jobs, user, first.id) == "completed"
    assert all(j.status == "completed" for j in finished) and len(finished) == 2
    assert all(j.retry_count == 0 for j in finished)  # waiting out an outage is no retry
    assert held_seen[1:8] == [True] * 7  # retries ran while the queue was held
    assert not queue.held()
    with jobs.db.session() as s:
        chunks = s.execute(select(Chunk)).scalars().all()
    assert all(c.status == "done" and c.writes == 1 and c.error is None for c in chunks)
    assert worker.metrics.errors.labels("outage")._value.get() >= 1


async def _status_is(jobs, user, job_id, status) -> bool:
    return await _status(jobs, user, job_id) == status


async def test_database_outage_delays_never_fails(parts):
    """Every database call of the worker fails for a while (claim, cache, the result
    write): the batch is kept and retried, the job completes and is written once."""
    settings, user, queue, jobs, engine, worker, finished = parts
    job = await jobs.submit(SubmitRequest(user.id, "Database away. Then back.", "en", "pt"), "v")
    calls = {"claim": 0, "complete": 0}
    claim, complete = jobs.claim_chunk, jobs.complete_chunk

    def claim_down(*args):
        calls["claim"] += 1
        if calls["claim"] <= 5:
            raise _pg_down()
        return claim(*args)

    def complete_down(*args, **kw):
        calls["complete"] += 1
        if calls["complete"] <= 5:
            raise _pg_down()
        return complete(*args, **kw)

    jobs.claim_chunk, jobs.complete_chunk = claim_down, complete_down
    task = asyncio.create_task(worker.run())
    await _until(lambda: _status_is(jobs, user, job.id, "completed"))
    worker.stop()
    await asyncio.wait_for(task, 5)
    # claimed once: the retries after the failed result writes reuse the claim, so the
    # outage spends no attempt in the database either
    assert calls["claim"] == 6 and calls["complete"] == 6
    # the retries after a failed result write find the segments in the cache
    assert len(engine.calls) == 1
    with jobs.db.session() as s:
        (chunk,) = s.execute(select(Chunk).where(Chunk.job_id == job.id)).scalars().all()
    assert chunk.status == "done" and chunk.writes == 1 and chunk.attempts == 1
    assert finished[-1].status == "completed" and finished[-1].retry_count == 0
    assert queue.inflight() == 0 and not queue.held()


async def test_stop_during_an_outage_leaves_the_batch_for_redelivery(parts):
    settings, user, queue, jobs, engine, worker, finished = parts

    def down(*args):
        raise InferenceUnavailable("circuit open")

    engine.translate = down
    job = await jobs.submit(SubmitRequest(user.id, "Never translated here.", "en", "pt"), "v")
    task = asyncio.create_task(worker.run())
    await _until(lambda: asyncio.sleep(0, queue.held()))
    worker.stop()
    await asyncio.wait_for(task, 5)
    assert queue.inflight() == 1  # not acked: delivered again (Kafka) or recovered (memory)
    assert not queue.held()
    assert await _status(jobs, user, job.id) in ("queued", "processing", "running")
    assert not finished


async def test_content_errors_keep_the_attempt_limit(parts):
    """A model error on the content is not an outage: after max_chunk_attempts the job
    fails (and its chunk goes to the dead letter) as before."""
    settings, user, queue, jobs, engine, worker, finished = parts

    tries = []

    def broken(*args):
        tries.append(1)
        raise RuntimeError("Triton at x: INTERNAL: the model failed on this input")

    engine.translate = broken
    job = await jobs.submit(SubmitRequest(user.id, "Poison.", "en", "pt"), "v")
    task = asyncio.create_task(worker.run())
    await _until(lambda: _status_is(jobs, user, job.id, "failed"))
    worker.stop()
    await asyncio.wait_for(task, 5)
    failed = await jobs.get(user.id, job.id)
    assert "after 2 attempts" in failed.error and "model failed" in failed.error
    assert len(tries) == settings.max_chunk_attempts
    assert failed.retry_count == settings.max_chunk_attempts - 1  # content retries count
    assert queue.inflight() == 0 and not queue.held()


async def test_late_give_up_does_not_fail_a_finished_chunk(parts):
    """A stale redelivery past the attempt limit arrives after another delivery finished
    the chunk: the chunk stays done and the job completed."""
    settings, user, queue, jobs, engine, worker, finished = parts
    job = await jobs.submit(SubmitRequest(user.id, "Finished first.", "en", "pt"), "v")
    (d,) = await queue.consume(1000, timeout=0.1)
    await worker.process([d])
    assert await _status(jobs, user, job.id) == "completed"
    stale = await jobs.submit(SubmitRequest(user.id, "Other.", "en", "pt"), "v")
    (d2,) = await queue.consume(1000, timeout=0.1)
    d2.message.job_id, d2.message.chunk_index = job.id, 0
    d2.message.attempt = settings.max_chunk_attempts  # "failed N times; giving up"
    await worker.process([d2])
    done = await jobs.get(user.id, job.id)
    assert done.status == "completed" and done.error is None
    with jobs.db.session() as s:
        chunk = s.execute(select(Chunk).where(Chunk.job_id == job.id)).scalar_one()
    assert chunk.status == "done" and chunk.error is None and chunk.result_text
    assert await _status(jobs, user, stale.id) == "queued"
