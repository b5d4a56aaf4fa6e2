"""The Kafka broker stopped for 30 s in the middle of a backlog, then started again
(issue 10, item 4): REST keeps answering (jobs submitted while it is down are published
once it is back, or re-published by the reconciler), the worker finishes what it holds,
and when the broker is back every job completes, none fails, each chunk is written once
and every result equals a clean run.

A private broker (own state folder and ports, the shared jars) is stopped, so other
scenarios and test sessions on the shared broker are not affected."""

from __future__ import annotations

import time

import pytest

import devstack
from tests.functional.L0_outages.outage import (
    OUTAGE_S,
    SLOW_LANE,
    Submitted,
    assert_like_clean_run,
    submit_backlog,
    wait_some_done,
)
from tests.functional.L0_service.documents import document

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(private_kafka, make_stack):
    return make_stack(
        "brokeroutage",
        bootstrap=private_kafka[1],
        MTB_REQUEUE_AFTER_S="10",
        MTB_RECONCILE_INTERVAL_S="2",
        MTB_KAFKA_PUBLISH_TIMEOUT_S="5",
        **SLOW_LANE,
    )


def test_broker_down_30s_mid_backlog(stack, private_kafka, local_engine):
    cfg, _ = private_kafka
    backlog = submit_backlog(stack, jobs=3, words=900, seed=900)
    total = sum(s.chunks for s in backlog)
    done = wait_some_done(stack, total)
    t0 = time.monotonic()
    assert devstack.stop_service("kafka", cfg)
    for i in range(2):  # submitted while the broker is away: REST still answers
        t = time.monotonic()
        text = document(400, seed=950 + i)
        sub = stack.submit(text, "high")
        backlog.append(Submitted(sub["job_id"], text, sub["chunk_count"]))
        assert time.monotonic() - t < 15, "REST blocked on the missing broker"
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t0)))
    t1 = time.monotonic()
    assert devstack.ensure_service("kafka", cfg).started
    back = time.monotonic()
    finished = assert_like_clean_run(stack, backlog, local_engine)
    print(
        f"\nbroker down {back - t0:.1f} s (restart {back - t1:.1f} s) with {done}/{total} "
        f"chunks done; all {len(backlog)} jobs completed {finished - back:.1f} s after"
    )
    log = stack.workers[0].log()
    assert "chunk failed" not in log and "giving up" not in log
