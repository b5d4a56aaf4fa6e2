"""One trace per job through the embedded app: the REST request's server span -> job.submit
-> chunk.translate -> inference.translate (+ DB and cache spans), a caller's traceparent
continued; the same for an ingest message's traceparent header."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
from aiokafka.structs import TopicPartition

from control_plane import tracing
from control_plane.inference import LocalInferenceClient
from control_plane.jobs.ingest import IngestConsumer
from control_plane.queue.kafka.offsets import OffsetTracker
from control_plane.runtime import build_runtime
from control_plane.settings import Settings
from tests.unit.api.fake_engine import FakeEngine
from tests.unit.api.test_app import client, engine, settings, user, wait_done  # noqa: F401
from tests.unit.jobs.test_ingest import FakeQueue

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


@pytest.fixture
def spans():
    exporter = tracing.memory_exporter()
    exporter.clear()
    yield exporter
    exporter.clear()


def job_spans(exporter, job_id: str) -> list:
    """Every finished span of the job's trace (found through its job.submit span)."""
    finished = exporter.get_finished_spans()
    (submit,) = [
        s for s in finished if s.name == "job.submit" and s.attributes["mtb.job_id"] == job_id
    ]
    return [s for s in finished if s.context.trace_id == submit.context.trace_id]


def parent_of(found: list, span):  # noqa: ANN201
    ids = {s.context.span_id: s for s in found}
    return ids.get(span.parent.span_id) if span.parent is not None else None


async def wait_for(exporter, job_id: str, name: str) -> list:
    for _ in range(200):  # the finish span ends just after the job's status is written
        found = job_spans(exporter, job_id)
        if any(s.name == name for s in found):
            return found
        await asyncio.sleep(0.02)
    return job_spans(exporter, job_id)


async def test_rest_submit_and_worker_make_one_trace(client, spans):  # noqa: F811
    h = user(client)
    r = await client.post(
        "/api/v1/translate",
        json={"content": "One sentence here. Another one there!", "source_language": "en",
              "target_language": "pt", "priority": "high"},
        headers={**h, "traceparent": TRACEPARENT},
    )  # fmt: skip
    assert r.status == 202, await r.text()
    job_id = (await r.json())["job_id"]
    await wait_done(client, job_id, h)
    found = await wait_for(spans, job_id, "job.finish")
    names = [s.name for s in found]
    assert {s.context.trace_id for s in found} == {int(CALLER_TRACE, 16)}  # one trace
    (server,) = [s for s in found if s.name == "POST /api/v1/translate"]
    (submit,) = [s for s in found if s.name == "job.submit"]
    chunks = [s for s in found if s.name == "chunk.translate"]
    calls = [s for s in found if s.name == "inference.translate"]
    assert chunks and calls
    # parent/child order: caller -> server -> job.submit -> chunk.translate -> inference
    assert server.parent.span_id == int(CALLER_SPAN, 16)
    assert server.attributes["http.response.status_code"] == 202
    assert server.attributes["http.route"] == "/api/v1/translate"
    assert parent_of(found, submit) is server
    assert all(parent_of(found, c) is submit for c in chunks)
    assert all(parent_of(found, c).name == "chunk.translate" for c in calls)
    for name in ("db.insert_job",):
        assert parent_of(found, next(s for s in found if s.name == name)) is submit
    for name in ("db.claim_chunk", "cache.lookup", "cache.write", "db.complete_chunk"):
        assert name in names, name
        assert all(parent_of(found, s).name == "chunk.translate" for s in found if s.name == name)
    finish = next(s for s in found if s.name == "job.finish")
    assert parent_of(found, finish) is submit
    # the job's attributes (the design's log fields)
    assert submit.attributes["mtb.job_id"] == job_id
    assert submit.attributes["mtb.priority"] == "high"
    assert submit.attributes["mtb.pair"] == "en-pt"
    assert submit.attributes["mtb.word_count"] == 6
    assert {c.attributes["mtb.job_id"] for c in chunks} == {job_id}
    assert sorted(c.attributes["mtb.chunk_index"] for c in chunks) == list(range(len(chunks)))
    assert all("mtb.cache_hit" in c.attributes for c in chunks)
    assert finish.attributes["mtb.status"] == "completed"
    assert finish.attributes["mtb.cost_usd"] >= 0
    assert finish.attributes["mtb.model_version"]
    assert "mtb.processing_time_ms" in finish.attributes
    print(f"spans in the job's trace: {len(found)}: {sorted(names)}")


async def test_rest_submit_without_traceparent_starts_a_trace(client, spans):  # noqa: F811
    h = user(client)
    r = await client.post(
        "/api/v1/translate",
        json={"content": "Hello.", "source_language": "en", "target_language": "pt"},
        headers=h,
    )
    job_id = (await r.json())["job_id"]
    await wait_done(client, job_id, h)
    found = await wait_for(spans, job_id, "job.finish")
    (server,) = [s for s in found if s.name == "POST /api/v1/translate"]
    assert server.parent is None  # the request's span is the root
    assert {"job.submit", "chunk.translate", "inference.translate"} <= {s.name for s in found}
    # probes are not traced
    await client.get("/healthz")
    assert not [s for s in spans.get_finished_spans() if s.name.endswith("/healthz")]


async def test_log_line_of_a_finished_job_leads_to_its_trace(client, spans):  # noqa: F811
    import logging

    from control_plane.logs import JsonFormatter

    lines: list[dict] = []

    class Capture(logging.Handler):  # formats at emit time, as the service's handler does
        def emit(self, record):
            lines.append(json.loads(JsonFormatter().format(record)))

    handler = Capture(level=logging.INFO)
    logger = logging.getLogger("control_plane.runtime")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        h = user(client)
        r = await client.post(
            "/api/v1/translate",
            json={"content": "Log me.", "source_language": "en", "target_language": "pt"},
            headers={**h, "traceparent": TRACEPARENT},
        )
        job_id = (await r.json())["job_id"]
        await wait_done(client, job_id, h)
        found = await wait_for(spans, job_id, "job.finish")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    (entry,) = [e for e in lines if e.get("job_id") == job_id and e["message"] == "job completed"]
    finish = next(s for s in found if s.name == "job.finish")
    assert entry["trace_id"] == CALLER_TRACE  # the line leads to the job's trace
    assert entry["span_id"] == f"{finish.context.span_id:016x}"
    assert entry["correlation_id"] == job_id
    for field in ("processing_time_ms", "words_per_minute", "cost_usd", "model_version",
                  "cache_hit"):  # fmt: skip
        assert field in entry, field


@pytest.fixture
async def ingest(tmp_path):
    cfg = Settings(data_dir=tmp_path, chunk_words=20, max_words=50, log_format="text")
    queue = FakeQueue()
    svc = build_runtime(cfg, client=LocalInferenceClient(engine=FakeEngine()), queue=queue)
    await svc.db.run(svc.db.migrate)
    await svc.client.start()
    consumer = IngestConsumer(cfg, queue, svc)
    from control_plane.auth import create_user

    key = create_user(svc.db.engine, "pro@x.io", "pro")[1]
    yield consumer, queue, key
    await svc.client.close()
    svc.db.close()


async def deliver(consumer, value: bytes, headers: list, offset: int = 0) -> None:
    tracker = OffsetTracker()
    tracker.add(offset)
    rec = SimpleNamespace(key=b"k", value=value, offset=offset, headers=headers)
    await consumer._handle(TopicPartition("t.ingest", 0), rec, tracker)  # noqa: SLF001


async def test_ingest_message_continues_the_producers_trace(ingest, spans):
    consumer, queue, key = ingest
    body = json.dumps({"api_key": key, "content": "Hello there.", "source_language": "en",
                       "target_language": "pt", "priority": "high"}).encode()  # fmt: skip
    await deliver(consumer, body, [("traceparent", TRACEPARENT.encode())])
    (msg,) = queue.published
    submit = next(s for s in spans.get_finished_spans() if s.name == "job.submit")
    assert submit.context.trace_id == int(CALLER_TRACE, 16)
    assert submit.parent.span_id == int(CALLER_SPAN, 16)
    assert submit.attributes["mtb.job_id"] == msg.job_id
    assert submit.attributes["mtb.priority"] == "high"
    # the chunk message carries the submit span's context on to the workers
    assert msg.headers["traceparent"].split("-")[1] == CALLER_TRACE
    assert msg.headers["traceparent"].split("-")[2] == f"{submit.context.span_id:016x}"
    # without the header (or with a broken one) the job's trace starts at job.submit
    spans.clear()
    for offset, headers in ((1, []), (2, [("traceparent", b"00-zz-yy-01")])):
        await deliver(consumer, body, headers, offset=offset)
    roots = [s for s in spans.get_finished_spans() if s.name == "job.submit"]
    assert len(roots) == 2 and all(s.parent is None for s in roots)
