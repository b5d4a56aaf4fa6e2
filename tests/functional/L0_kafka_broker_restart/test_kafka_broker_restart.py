"""Restart the Kafka broker in the middle of a run (stop + start through the
devstack API): REST keeps answering, and every job, including those submitted
while the broker was down, completes with each chunk written once. A private broker
(own state folder and ports, the shared jars) keeps other test sessions unaffected."""

from __future__ import annotations

import time

import pytest

import devstack
from tests.functional.L0_service.documents import document

pytestmark = [pytest.mark.services]


@pytest.fixture(scope="module")
def stack(private_kafka, make_stack):
    return make_stack(
        "restart",
        bootstrap=private_kafka[1],
        MTB_REQUEUE_AFTER_S="10",
        MTB_RECONCILE_INTERVAL_S="2",
        MTB_KAFKA_PUBLISH_TIMEOUT_S="5",
    )


def test_broker_restart_loses_no_job(stack, private_kafka):
    cfg, _ = private_kafka
    before = [stack.submit(document(2_000, seed=300 + i))["job_id"] for i in range(3)]
    deadline = time.monotonic() + 120
    while stack.sql("select coalesce(sum(chunks_done), 0) from jobs")[0][0] < 1:
        assert time.monotonic() < deadline, "nothing was processed before the restart"
        time.sleep(0.1)

    t0 = time.monotonic()
    assert devstack.stop_service("kafka", cfg)
    stopped = time.monotonic() - t0
    during = []
    for i, priority in enumerate(["normal", "high", "critical"]):
        t = time.monotonic()
        during.append(stack.submit(document(300, seed=400 + i), priority)["job_id"])
        assert time.monotonic() - t < 15, "REST blocked on the missing broker"
    time.sleep(2.0)
    t1 = time.monotonic()
    info = devstack.ensure_service("kafka", cfg)
    assert info.started
    print(f"\nbroker stopped in {stopped:.1f} s, down {t1 - t0:.1f} s, restarted in "
          f"{time.monotonic() - t1:.1f} s")  # fmt: skip

    for job_id in before + during:
        job = stack.wait(job_id, timeout=240)
        assert job["status"] == "completed", job
    print(f"all {len(before + during)} jobs completed {time.monotonic() - t1:.1f} s after restart")
    rows = stack.sql("select status, count(*), max(writes) from chunks group by status")
    assert len(rows) == 1 and rows[0][0] == "done" and rows[0][2] == 1, rows


def test_lost_publish_is_republished_by_the_reconciler(stack):
    """A job whose chunk messages never reached Kafka (written to the DB, publish lost):
    the worker's reconciler finds the stale chunks and publishes them again."""
    import asyncio

    import requests

    from control_plane.cache import SegmentCache
    from control_plane.db import Database
    from control_plane.jobs.service import JobService, SubmitRequest
    from control_plane.settings import Settings

    class LostQueue:
        async def publish(self, message):  # the broker never sees it
            return None

    langs = requests.get(f"{stack.url}/api/v1/languages", timeout=10).json()["pairs"]
    version = next(p["model_version"] for p in langs if (p["source"], p["target"]) == ("en", "pt"))
    (user_id,) = stack.sql("select id from users order by created_at limit 1")[0]
    db = Database(stack.database_url)
    try:
        jobs = JobService(db, LostQueue(), SegmentCache(db.engine, 10), Settings(chunk_words=1000))
        req = SubmitRequest(user_id, document(1_500, seed=500), "en", "pt", "high")
        job = asyncio.run(jobs.submit(req, version))
    finally:
        db.close()
    t0 = time.monotonic()
    deadline = t0 + 90
    while True:
        (status,) = stack.sql("select status from jobs where id = %(j)s", j=job.id)[0]
        if status == "completed":
            break
        assert time.monotonic() < deadline, f"lost job never completed (status {status})"
        time.sleep(0.5)
    print(f"\nlost publish recovered: job completed {time.monotonic() - t0:.1f} s after submit")
    rows = stack.sql("select max(writes), count(*) from chunks where job_id = %(j)s", j=job.id)
    assert rows[0][0] == 1 and rows[0][1] == job.chunk_count
    assert "re-published stale chunks" in stack.workers[0].log()
