"""Triton stopped for 30 s in the middle of a backlog, without the in-process fallback
(issue 10, item 4): the Kafka worker's calls fail with "unavailable" (connection refused,
then the open circuit), the worker keeps its batch and retries without spending the
chunks' attempts; when Triton is back (same ports) every job completes, none fails, and
every result equals a clean run. The circuit closes again (it never sticks half-open).

A private tritonserver (own ports and folder) is stopped, not the session's shared one."""

from __future__ import annotations

import pytest

import devstack
from devstack import REPO_ROOT
from tests.functional.L0_outages.outage import (
    OUTAGE_S,
    SLOW_LANE,
    assert_like_clean_run,
    outage,
    submit_backlog,
    wait_some_done,
)

pytestmark = [pytest.mark.services, pytest.mark.slow]


class PrivateTriton:
    """tritonserver on model_repository/ at fixed free ports, so it can be restarted where
    the clients expect it."""

    def __init__(self, workdir, model_dir) -> None:  # noqa: ANN001
        self.workdir = workdir
        self.model_dir = model_dir
        self.ports = {k: devstack.free_port() for k in ("http", "grpc", "metrics")}
        self.server = None
        self.url = f"127.0.0.1:{self.ports['grpc']}"

    def start(self) -> None:
        self.server = devstack.start_triton(
            REPO_ROOT / "model_repository",
            http_port=self.ports["http"],
            grpc_port=self.ports["grpc"],
            metrics_port=self.ports["metrics"],
            workdir=self.workdir,
            extra_env={"MTB_MODEL_DIR": str(self.model_dir)},  # the server's model.py reads it
        )

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture(scope="module")
def private_triton(model_dir, tmp_path_factory):
    triton = PrivateTriton(tmp_path_factory.mktemp("triton-outage-server"), model_dir)
    triton.start()
    try:
        yield triton
    finally:
        triton.stop()


@pytest.fixture(scope="module")
def stack(private_triton, make_stack):
    return make_stack(
        "tritonoutage",
        MTB_INFERENCE="triton",
        MTB_TRITON_URL=private_triton.url,
        MTB_TRITON_FALLBACK="0",
        **SLOW_LANE,
    )


def test_triton_down_30s_mid_backlog(stack, private_triton, local_engine):
    backlog = submit_backlog(stack, jobs=4, words=900, seed=800)
    total = sum(s.chunks for s in backlog)
    done = wait_some_done(stack, total)
    t = outage(private_triton.stop, private_triton.start, OUTAGE_S)
    finished = assert_like_clean_run(stack, backlog, local_engine)
    log = stack.workers[0].log()
    print(
        f"\nTriton down {t['down_s']:.1f} s (stop {t['stop_s']:.1f} s, restart "
        f"{t['start_s']:.1f} s) with {done}/{total} chunks done; the rest done "
        f"{finished - t['back_at']:.1f} s after"
    )
    assert "dependency unavailable; holding the batch and retrying" in log
    assert '"dependency back; batch done"' in log
    assert "triton circuit open" in log  # calls failed fast while it was down ...
    assert "triton circuit closed" in log  # ... and a probe closed it again
    assert "translating in-process" not in log  # no fallback: Triton did the work
    assert "chunk failed" not in log and "giving up" not in log
