"""REST -> PostgreSQL -> Kafka -> `mtctl worker` -> inference -> result, at every priority;
strict priority under a backlog; results events and trace context on the wire; retries,
dead letter and a readable failure when inference keeps failing."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest
import requests

from tests.functional.L0_service.documents import document

pytestmark = pytest.mark.services

SHORT = "The meeting starts at nine.\n\n  - Please bring your laptop!\n"


def queue_depth(stack, priority: str) -> float:
    text = requests.get(f"{stack.url}/metrics", timeout=10).text
    m = re.search(rf'^mtb_queue_depth{{priority="{priority}"}} (\S+)', text, re.M)
    return float(m.group(1)) if m else -1.0


@pytest.fixture(scope="module")
def stack(make_stack):
    return make_stack(
        "priorities",
        MTB_RETRY_BACKOFF_S="0.2",
        MTB_MAX_CHUNK_ATTEMPTS="3",
        # far shorter than the backlog below takes: polling must never wait for the work
        MTB_KAFKA_MAX_POLL_INTERVAL_MS="3000",
    )


@pytest.mark.parametrize("priority", ["critical", "high", "normal"])
def test_each_priority_end_to_end(stack, priority):
    text = SHORT.replace("nine", f"nine ({priority})")
    sub = stack.submit(text, priority)
    assert sub["status"] == "queued" and sub["priority"] == priority
    job = stack.wait(sub["job_id"], timeout=60)
    assert job["status"] == "completed", job
    assert job["progress"] == 1.0
    out = stack.result(sub["job_id"])
    assert "reunião" in out.lower()
    assert out.count("\n") == text.count("\n") and "  - " in out
    rows = stack.sql("select status, writes from chunks where job_id = %(j)s", j=sub["job_id"])
    assert rows == [("done", 1)]
    # the chunk travelled over the topic of its priority, keyed by job id, with a trace
    records = [
        r
        for r in stack.read(f"chunks.{priority}", at_least=1, timeout=10)
        if r.key == sub["job_id"].encode()
    ]
    assert records, f"no message for the job on chunks.{priority}"
    headers = dict(records[0].headers)
    assert headers["traceparent"].decode().split("-")[1] == uuid.UUID(sub["job_id"]).hex
    body = json.loads(records[0].value)
    assert (body["job_id"], body["chunk_index"], body["priority"]) == (sub["job_id"], 0, priority)


def _result_events(stack, job_id: str) -> list[dict]:
    deadline = time.monotonic() + 30
    events: list[dict] = []
    while time.monotonic() < deadline and not events:
        events = [
            json.loads(r.value)
            for r in stack.read("results", at_least=1, timeout=5)
            if r.key == job_id.encode()
        ]
    return events


def test_results_topic_announces_completed_jobs(stack):
    sub = stack.submit("A results event is published for this job.", "high")
    assert stack.wait(sub["job_id"])["status"] == "completed"
    events = _result_events(stack, sub["job_id"])
    assert events and events[0]["event"] == "job.completed"
    assert events[0]["result_url"] == f"/api/v1/jobs/{sub['job_id']}/result"


def test_jobs_served_from_the_cache_are_announced_too(stack):
    """A job whose every segment is cached goes through the queue like any other (so it
    cannot be told from a translated one) and is announced once on the results topic."""
    text = "This sentence is translated once and then comes from the cache."
    assert stack.wait(stack.submit(text, "high")["job_id"])["status"] == "completed"
    again = stack.submit(text, "high")
    assert again["status"] == "queued"  # not finished at submit: no tell-tale for others
    assert stack.wait(again["job_id"])["status"] == "completed"
    events = _result_events(stack, again["job_id"])
    assert len(events) == 1 and events[0]["event"] == "job.completed"


def test_estimates_follow_the_workers(stack):
    """The API never sees a chunk finish in Kafka mode; it re-reads backlog and throughput
    from the database, so finished work stops counting and the rate is the workers'."""
    from datetime import datetime

    first = stack.submit(document(3_000, seed=77))
    assert stack.wait(first["job_id"])["status"] == "completed"
    deadline = time.monotonic() + 60
    while stack.sql("select count(*) from chunks where status in ('queued', 'processing')")[0][0]:
        assert time.monotonic() < deadline, "other chunks still queued"
        time.sleep(0.2)
    time.sleep(3)  # one MTB_ESTIMATE_REFRESH_S (2 s) round
    t0 = time.time()
    sub = stack.submit(document(1_000, seed=78))
    eta = datetime.fromisoformat(sub["estimated_completion"]).timestamp() - t0
    # counting the finished backlog at the 60 words/s seed gave minutes
    assert eta < 10, sub


def test_critical_overtakes_a_normal_backlog(stack):
    backlog = [stack.submit(document(4_000, seed=200 + i))["job_id"] for i in range(3)]
    # the API's /metrics shows the backlog as the consumer group's lag
    deadline = time.monotonic() + 5
    depth = 0.0
    while time.monotonic() < deadline and depth <= 0:
        time.sleep(0.3)
        depth = queue_depth(stack, "normal")
    assert depth > 0, "mtb_queue_depth{priority=normal} never showed the backlog"
    t0 = time.monotonic()
    crit = stack.submit("This urgent sentence jumps the queue.", "critical")
    job = stack.wait(crit["job_id"], timeout=60)
    latency = time.monotonic() - t0
    assert job["status"] == "completed", job
    statuses = [stack.sql("select status from jobs where id = %(j)s", j=j)[0][0] for j in backlog]
    print(f"\ncritical job done in {latency:.2f} s; backlog {depth:.0f} chunks, jobs: {statuses}")
    assert statuses.count("completed") < len(backlog), "critical waited for the whole backlog"
    assert latency < 15
    for j in backlog:
        assert stack.wait(j, timeout=180)["status"] == "completed"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and depth > 0:
        time.sleep(0.5)
        depth = queue_depth(stack, "normal")
    assert depth == 0, "the lag did not drain after the backlog completed"


def test_long_work_never_stalls_polling(stack):
    """The backlog above kept the worker busy far longer than max.poll.interval.ms (3 s)
    with its records fetched long before they were processed, yet the worker never left
    the group: one assignment, no revocation, no 'leave group'."""
    log = stack.workers[0].log()
    assert log.count('"partitions assigned"') == 1, stack.workers[0].log_tail()
    assert '"partitions revoked"' not in log
    assert "max_poll_interval" not in log.lower() and "leaving group" not in log.lower()


def test_failing_inference_retries_then_dead_letters(stack):
    """A worker whose every inference call times out: the chunk is retried through the
    retry topic, then lands in the dead-letter topic and the job fails readably."""
    for w in stack.workers:
        assert w.stop() == 0, w.log_tail()
    broken = stack.start_worker("broken", MTB_INFERENCE_TIMEOUT_S="0.000001")
    try:
        sub = stack.submit("This sentence can never be translated here.", "high")
        job = stack.wait(sub["job_id"], timeout=90)
        assert job["status"] == "failed", job
        assert "translation failed after 3 attempts" in job["error"]
        retries = [
            r for r in stack.read("chunks.retry", at_least=2, timeout=20)
            if r.key == sub["job_id"].encode()
        ]  # fmt: skip
        assert [json.loads(r.value)["attempt"] for r in retries] == [1, 2]
        dead = [
            json.loads(r.value)
            for r in stack.read("dead-letter", at_least=1, timeout=20)
            if r.key == sub["job_id"].encode()
        ]
        assert len(dead) == 1, dead
        assert dead[0]["reason"] == "chunk_failed"
        assert "translation failed after 3 attempts" in dead[0]["message"]
        assert json.loads(dead[0]["value"])["chunk_index"] == 0
        failed = [
            json.loads(r.value)
            for r in stack.read("results", at_least=1, timeout=10)
            if r.key == sub["job_id"].encode()
        ]
        assert failed and failed[0]["event"] == "job.failed"
    finally:
        broken.stop()
