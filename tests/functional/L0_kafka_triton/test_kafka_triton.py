"""The whole production stack, all real: REST -> PostgreSQL -> Kafka -> `mtctl worker` ->
Triton (gRPC, the translator model on a private tritonserver) -> result, at every
priority; the text equals the in-process engine's and Triton's own metrics show the work."""

from __future__ import annotations

import pytest

from control_plane.text.chunking import Layout
from control_plane.text.protect import run_sync
from control_plane.text.spans import Protection
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


def test_spans_and_glossary_through_triton(stack, local_engine):
    """Protected spans work on the Triton path too (the worker masks, Triton translates
    the masked text): the same output as the in-process engine through protect."""
    text = (
        "Deleted %(count)d files from {folder}; see https://example.com/help.\n\n"
        "Open the <b>settings</b> and save the file."
    )
    glossary = {"settings": "preferências"}
    sub = stack.submit(text, "high", glossary=glossary)
    job = stack.wait(sub["job_id"], timeout=120)
    assert job["status"] == "completed", job
    out = stack.result(sub["job_id"])
    for span in ("%(count)d", "{folder}", "https://example.com/help", "<b>", "</b>"):
        assert out.count(span) == 1, out
    assert "preferências" in out
    layout = Layout.parse(text, "en")
    call = lambda texts: local_engine.translate(texts, "en", "pt")  # noqa: E731
    want = run_sync(layout.segments, Protection.of(glossary=glossary), call)
    assert out == layout.render([t.text for t in want])
