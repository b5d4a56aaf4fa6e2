"""Worker pools as k8s/scaling-policy.yaml deploys them: one `mtctl worker` per pool, each
consuming only its priorities' topics (MTB_WORKER_PRIORITIES / --priorities) in the one
consumer group MTB_KAFKA_GROUP, on the real broker. The group splits each topic among the
members subscribed to it; critical work is served while the normal pool is scaled to zero,
and normal work waits for that pool, not for the critical one (KEDA's Kafka trigger sees
its lag and wakes the pool)."""

from __future__ import annotations

import time

import pytest
import requests

from control_plane.domain import PRIORITIES

pytestmark = pytest.mark.services

PARTITIONS = 3  # MTB_KAFKA_PARTITIONS of start_stack
TEXT = "The meeting starts at nine."


def until(condition, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout} s: {what()}")
        time.sleep(0.5)


def status(stack, job_id: str) -> str:  # noqa: ANN001
    svc = stack.service
    r = requests.get(
        f"{svc.url}/api/v1/jobs/{job_id}", headers=svc.headers("enterprise"), timeout=10
    )
    assert r.status_code == 200, r.text
    return r.json()["status"]


def chunk_partitions(worker, prefix: str) -> set[str]:  # noqa: ANN001
    return {p for p in worker.assigned() if p.startswith(f"{prefix}chunks.")}


def topic_parts(prefix: str, *names: str) -> set[str]:
    return {f"{prefix}chunks.{n}[{i}]" for n in names for i in range(PARTITIONS)}


@pytest.fixture(scope="module")
def stack(make_stack):
    s = make_stack("pools", workers=0)
    s.start_worker("pool-critical", MTB_WORKER_PRIORITIES="critical")
    s.start_worker("pool-rest", MTB_WORKER_PRIORITIES="high,normal,retry")
    return s


def test_each_pool_owns_its_topics_in_the_shared_group(stack) -> None:  # noqa: ANN001
    critical, rest = stack.workers
    want_critical = topic_parts(stack.prefix, "critical")
    want_rest = topic_parts(stack.prefix, "high", "normal", "retry")
    until(
        lambda: (
            chunk_partitions(critical, stack.prefix) == want_critical
            and chunk_partitions(rest, stack.prefix) == want_rest
        ),
        timeout=60,
        what=lambda: (
            f"assignments {chunk_partitions(critical, stack.prefix)} / "
            f"{chunk_partitions(rest, stack.prefix)}"
        ),
    )
    for priority in PRIORITIES:
        job = stack.wait(stack.submit(TEXT, priority)["job_id"], timeout=60)
        assert job["status"] == "completed", job


def test_normal_waits_for_its_pool_while_critical_is_served(stack) -> None:  # noqa: ANN001
    critical, rest = stack.workers
    assert rest.stop() == 0  # the normal pool scaled to zero
    until(
        lambda: chunk_partitions(critical, stack.prefix) == topic_parts(stack.prefix, "critical"),
        timeout=60,
        what=lambda: f"critical pool's partitions {chunk_partitions(critical, stack.prefix)}",
    )
    normal = stack.submit(TEXT.replace("nine", "ten"), "normal")["job_id"]
    urgent = stack.submit(TEXT.replace("nine", "eight"), "critical")["job_id"]
    assert stack.wait(urgent, timeout=60)["status"] == "completed"
    time.sleep(3)  # the critical worker had every chance to take the normal chunk
    assert status(stack, normal) == "queued"
    stack.start_worker("pool-rest-again", MTB_WORKER_PRIORITIES="high,normal,retry")
    assert stack.wait(normal, timeout=90)["status"] == "completed"
