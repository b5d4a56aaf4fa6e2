"""The whole production stack, all real: REST -> PostgreSQL -> Kafka -> `mtctl worker` ->
Triton (gRPC, the translator model on a private tritonserver) -> result, at every
priority; the text equals the in-process engine's and Triton's own metrics show the work."""

from __future__ import annotations

import pytest

from control_plane.jobs.chunking import Layout
from tests.functional.L0_triton.test_service_triton import _segments_total

pytestmark = pytest.mark.services

TEXT = "The meeting starts at noon ({p}).\n\n  - Please save your {p} changes before leaving."


@pytest.fixture(scope="module")
def triton(translator_triton):
    return translator_triton


@pytest.fixture(scope="module")
def stack(triton, make_stack):
    return make_stack("triton", MTB_INFERENCE="triton", MTB_TRITON_URL=triton.url)


@pytest.mark.parametrize("priority", ["critical", "high", "normal"])
def test_each_priority_through_triton(stack, triton, local_engine, priority):
    before = _segments_total(triton.urls["metrics"])
    text = TEXT.format(p=priority)
    sub = stack.submit(text, priority)
    job = stack.wait(sub["job_id"], timeout=120)
    assert job["status"] == "completed", job
    layout = Layout.parse(text, "en")
    want = layout.render([t.text for t in local_engine.translate(layout.segments, "en", "pt")])
    assert stack.result(sub["job_id"]) == want
    assert _segments_total(triton.urls["metrics"]) - before >= len(layout.segments)
    assert stack.sql("select writes from chunks where job_id = %(j)s", j=sub["job_id"]) == [(1,)]
