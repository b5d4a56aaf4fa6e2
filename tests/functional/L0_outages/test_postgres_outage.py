"""PostgreSQL stopped for 30 s in the middle of a backlog (issue 10, item 4): the Kafka
worker keeps the batch in hand, waits and retries without spending the chunks' attempts,
and takes no new work meanwhile; when the database is back every job completes, none
fails, each chunk is written once and every result equals a clean run.

The stack runs on a private PostgreSQL (own state folder and port) so that stopping it
cannot break other scenarios or test sessions on the shared server."""

from __future__ import annotations

import pytest
import requests

import devstack
from tests.functional.L0_outages.outage import (
    OUTAGE_S,
    SLOW_LANE,
    assert_like_clean_run,
    chunks_done,
    outage,
    submit_backlog,
    wait_some_done,
)

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.fixture(scope="module")
def private_pg(tmp_path_factory):
    cfg = devstack.Config.from_env(
        state_dir=tmp_path_factory.mktemp("pg-outage-state"), pg_port=devstack.free_port()
    )
    info = devstack.ensure_service("postgres", cfg)
    try:
        yield cfg, info.url
    finally:
        devstack.stop_service("postgres", cfg, purge=True)


@pytest.fixture(scope="module")
def stack(private_pg, make_stack):
    return make_stack("pgoutage", postgres_url=private_pg[1], **SLOW_LANE)


def test_postgres_down_30s_mid_backlog(stack, private_pg, local_engine):
    cfg, _ = private_pg
    backlog = submit_backlog(stack, jobs=4, words=900, seed=700)
    total = sum(s.chunks for s in backlog)
    done = wait_some_done(stack, total)
    answers: list[tuple[int, str | None, str]] = []

    def stop_and_ask_the_api() -> None:
        """While the database is down the API answers 503 with Retry-After, never 500."""
        devstack.stop_service("postgres", cfg)
        job_id = backlog[0].job_id
        for _ in range(3):
            r = requests.get(
                f"{stack.url}/api/v1/jobs/{job_id}", headers=stack.service.headers("enterprise"),
                timeout=30,
            )  # fmt: skip
            answers.append((r.status_code, r.headers.get("Retry-After"), r.text))
            r = requests.post(
                f"{stack.url}/api/v1/translate", headers=stack.service.headers("enterprise"),
                json={"content": "Is anybody there?", "source_language": "en",
                      "target_language": "pt"}, timeout=30,
            )  # fmt: skip
            answers.append((r.status_code, r.headers.get("Retry-After"), r.text))

    t = outage(
        stop_and_ask_the_api,
        lambda: devstack.ensure_service("postgres", cfg),
        OUTAGE_S,
    )
    assert answers and all(code == 503 and retry for code, retry, _ in answers), answers
    assert all("database_unavailable" in text for _, _, text in answers), answers
    finished = assert_like_clean_run(stack, backlog, local_engine)
    after = chunks_done(stack)
    log = stack.workers[0].log()
    print(
        f"\nPostgreSQL down {t['down_s']:.1f} s (restart {t['start_s']:.1f} s) with "
        f"{done}/{total} chunks done; the rest done {finished - t['back_at']:.1f} s after"
    )
    assert after == total
    assert "dependency unavailable; holding the batch and retrying" in log  # hit mid-batch
    assert '"dependency back; batch done"' in log
    # no attempt was spent on the outage: no chunk was retried as failed, none given up
    assert "chunk failed" not in log and "giving up" not in log
