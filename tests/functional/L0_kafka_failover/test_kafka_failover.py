"""kill -9 the worker that is translating a 15,000-word document: the other member of
the consumer group takes its partition over and finishes the job; the result equals a
clean run and no chunk result was written twice (the ``writes`` counter and the
(job_id, chunk_index) unique constraint)."""

from __future__ import annotations

import time

import pytest

from control_plane.text.chunking import Layout
from tests.functional.L0_service.documents import document

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(make_stack):
    # one normal partition: exactly one worker owns the document
    return make_stack(
        "failover", workers=0, MTB_KAFKA_PARTITIONS="1", MTB_KAFKA_SESSION_TIMEOUT_MS="6000"
    )


def test_kill9_worker_mid_document(stack, local_engine):
    a = stack.start_worker("worker-a")
    b = stack.start_worker("worker-b")
    normal = f"{stack.topic('chunks.normal')}[0]"
    deadline = time.monotonic() + 60
    while not (normal in a.assigned() or normal in b.assigned()):
        assert time.monotonic() < deadline, (a.assigned(), b.assigned())
        time.sleep(0.2)
    owner, other = (a, b) if normal in a.assigned() else (b, a)

    text = document(15_000, seed=31)
    sub = stack.submit(text)
    job_id, n_chunks = sub["job_id"], sub["chunk_count"]
    assert n_chunks >= 12
    deadline = time.monotonic() + 300
    while True:
        (done,) = stack.sql("select chunks_done from jobs where id = %(j)s", j=job_id)[0]
        if done >= 3:
            break
        assert time.monotonic() < deadline, "the document made no progress"
        time.sleep(0.1)
    running = stack.sql(
        "select count(*) from chunks where job_id = %(j)s and status = 'processing'", j=job_id
    )[0][0]
    owner.kill9()
    t_kill = time.monotonic()
    print(f"\nkilled {owner.name} with {done}/{n_chunks} chunks done, {running} running")

    job = stack.wait(job_id, timeout=400)
    assert job["status"] == "completed", job
    print(f"{other.name} finished the document {time.monotonic() - t_kill:.1f} s after the kill")
    assert normal in other.assigned()  # the partition moved to the survivor

    rows = stack.sql(
        "select chunk_index, status, writes from chunks where job_id = %(j)s order by chunk_index",
        j=job_id,
    )
    assert [r[0] for r in rows] == list(range(n_chunks))
    assert all(status == "done" for _, status, _ in rows)
    assert [w for _, _, w in rows] == [1] * n_chunks, "a chunk result was written twice"

    # a clean run: the same segments through the engine directly
    layout = Layout.parse(text, "en")
    clean = layout.render([t.text for t in local_engine.translate(layout.segments, "en", "pt")])
    assert stack.result(job_id) == clean


def test_sigterm_finishes_the_batch_in_hand(stack):
    """SIGTERM while a batch is being translated: the worker finishes it, writes each chunk
    once, commits and exits 0, so nothing is left for another worker to redo."""
    for w in stack.workers:
        w.stop()
    worker = stack.start_worker("worker-drain")
    normal = f"{stack.topic('chunks.normal')}[0]"
    deadline = time.monotonic() + 60
    while normal not in worker.assigned():
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.2)
    sub = stack.submit(document(3_000, seed=41))
    job_id = sub["job_id"]
    deadline = time.monotonic() + 120
    while not stack.sql(
        "select 1 from chunks where job_id = %(j)s and status = 'processing'", j=job_id
    ):
        assert time.monotonic() < deadline, "no chunk was taken"
        time.sleep(0.02)
    assert worker.stop() == 0
    assert '"workers drained"' in worker.log()
    rows = stack.sql("select status, writes from chunks where job_id = %(j)s", j=job_id)
    assert rows and all(r == ("done", 1) for r in rows), rows
