"""One trace per job: submit -> queue headers -> worker chunk span -> DB, cache and inference
spans -> finish -> webhook; the sampler; trace ids on log lines."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from control_plane import tracing
from control_plane.auth import create_user
from control_plane.cache import SegmentCache
from control_plane.callbacks import CallbackSender
from control_plane.db import Database
from control_plane.inference import LocalInferenceClient
from control_plane.jobs.service import JobService, SubmitRequest
from control_plane.logs import JsonFormatter
from control_plane.metrics import Metrics
from control_plane.queue import MemoryChunkQueue
from control_plane.settings import Settings
from control_plane.workers import Worker
from tests.unit.api.fake_engine import FakeEngine

LOOPBACK = frozenset({"127.0.0.1"})  # the receiver listens on loopback


@pytest.fixture
def spans():
    exporter = tracing.memory_exporter()
    exporter.clear()
    yield exporter
    exporter.clear()


def by_name(exporter) -> dict:
    out: dict = {}
    for s in exporter.get_finished_spans():
        out.setdefault(s.name, []).append(s)
    return out


async def test_job_trace_spans_queue_worker_db_cache_inference(tmp_path, spans):
    settings = Settings(data_dir=tmp_path)
    db = Database(settings.effective_database_url)
    db.migrate()
    user, _ = create_user(db.engine, "t@x.io", "pro")
    queue = MemoryChunkQueue()
    finished = []

    async def on_finished(job):
        with tracing.tracer.start_as_current_span("job.finish"):
            finished.append(job)

    jobs = JobService(db, queue, SegmentCache(db.engine), settings, on_finished=on_finished)
    worker = Worker(
        "w", queue, jobs, LocalInferenceClient(engine=FakeEngine()), Metrics(), settings
    )
    job = await jobs.submit(SubmitRequest(user.id, "Trace me. Please.", "en", "pt"), "v")
    deliveries = await queue.consume(1000, timeout=0.1)
    assert "traceparent" in deliveries[0].message.headers
    await worker.process(deliveries)
    found = by_name(spans)
    assert {"job.submit", "db.insert_job", "chunk.translate", "db.claim_chunk", "cache.lookup",
            "inference.translate", "cache.write", "db.complete_chunk",
            "job.finish"} <= set(found)  # fmt: skip
    one = {n: found[n][0] for n in found}
    assert len({s.context.trace_id for s in spans.get_finished_spans()}) == 1
    submit, chunk = one["job.submit"], one["chunk.translate"]
    assert submit.parent is None  # no request around it here: the root
    assert chunk.parent.span_id == submit.context.span_id
    assert one["db.insert_job"].parent.span_id == submit.context.span_id
    for child in ("db.claim_chunk", "cache.lookup", "inference.translate", "cache.write",
                  "db.complete_chunk"):  # fmt: skip
        assert one[child].parent.span_id == chunk.context.span_id, child
    assert one["job.finish"].parent.span_id == submit.context.span_id  # the job's context
    assert submit.attributes["mtb.job_id"] == job.id
    assert submit.attributes["mtb.priority"] == "normal"
    assert submit.attributes["mtb.pair"] == "en-pt"
    assert submit.attributes["mtb.word_count"] == job.word_count
    assert chunk.attributes["mtb.chunk_index"] == 0
    assert chunk.attributes["mtb.cache_hit"] is False
    assert chunk.attributes["mtb.model_version"]
    assert one["cache.lookup"].attributes["mtb.cache_misses"] == 2
    assert one["inference.translate"].attributes["mtb.job_ids"] == (job.id,)
    completed = [e for e in chunk.events if e.name == "job.completed"]
    assert completed and completed[0].attributes["mtb.cost_usd"] >= 0
    assert finished and finished[0].id == job.id
    db.close()


async def test_batch_span_links_every_job(tmp_path, spans):
    settings = Settings(data_dir=tmp_path, batch_words=1000)
    db = Database(settings.effective_database_url)
    db.migrate()
    user, _ = create_user(db.engine, "t@x.io", "pro")
    queue = MemoryChunkQueue()
    jobs = JobService(db, queue, SegmentCache(db.engine), settings)
    worker = Worker(
        "w", queue, jobs, LocalInferenceClient(engine=FakeEngine()), Metrics(), settings
    )
    a = await jobs.submit(SubmitRequest(user.id, "First job here.", "en", "pt"), "v")
    b = await jobs.submit(SubmitRequest(user.id, "Second job there.", "en", "pt"), "v")
    await worker.process(await queue.consume(1000, timeout=0.1))
    found = by_name(spans)
    (call,) = found["inference.translate"]
    submits = {s.attributes["mtb.job_id"]: s for s in found["job.submit"]}
    linked = {link.context.trace_id for link in call.links} | {call.context.trace_id}
    assert linked == {submits[a.id].context.trace_id, submits[b.id].context.trace_id}
    db.close()


def _ctx(trace_id: int, sampled: bool):
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return trace.set_span_in_context(
        NonRecordingSpan(SpanContext(trace_id, 0x1234, is_remote=True, trace_flags=flags))
    )


def test_sampler_ratio_zero_keeps_critical_only():
    sampler = tracing.sampler(0.0)
    assert sampler.should_sample(None, 7, "job.submit").decision.is_sampled() is False
    normal = {"mtb.priority": "normal"}
    assert not sampler.should_sample(None, 7, "job.submit", attributes=normal).decision.is_sampled()
    critical = {"mtb.priority": "critical"}
    assert sampler.should_sample(None, 7, "job.submit", attributes=critical).decision.is_sampled()
    # under an unsampled request span too
    unsampled = _ctx(7, sampled=False)
    assert sampler.should_sample(unsampled, 7, "x", attributes=critical).decision.is_sampled()
    assert not sampler.should_sample(unsampled, 7, "x", attributes=normal).decision.is_sampled()
    # parent-based: a sampled parent's children are kept at ratio 0
    assert sampler.should_sample(_ctx(7, sampled=True), 7, "x").decision.is_sampled()
    # ratio 1: everything
    assert tracing.sampler(1.0).should_sample(None, 7, "x").decision.is_sampled()


def test_sampler_through_a_provider():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=tracing.sampler(0.0))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    for priority in ("normal", "high", "critical"):
        with tracer.start_as_current_span("job.submit", attributes={"mtb.priority": priority}):
            with tracer.start_as_current_span("chunk.translate"):
                pass
    kept = exporter.get_finished_spans()
    assert sorted(s.name for s in kept) == ["chunk.translate", "job.submit"]
    assert {s.attributes.get("mtb.priority") for s in kept if s.name == "job.submit"} == {
        "critical"
    }


def test_settings_sample_ratio_from_env():
    assert Settings.from_env({}).tracing_sample_ratio == 1.0
    assert Settings.from_env({"MTB_TRACING_SAMPLE_RATIO": "0.25"}).tracing_sample_ratio == 0.25


def test_log_lines_carry_trace_and_span_ids(spans):
    formatter = JsonFormatter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "job completed", (), None)
    record.job_id = "j-1"
    record.cost_usd = None
    outside = json.loads(formatter.format(record))
    assert "trace_id" not in outside and outside["correlation_id"] == "j-1"
    assert outside["cost_usd"] is None
    with tracing.tracer.start_as_current_span("s") as span:
        inside = json.loads(formatter.format(record))
        ctx = span.get_span_context()
    assert inside["trace_id"] == format(ctx.trace_id, "032x")
    assert inside["span_id"] == format(ctx.span_id, "016x")


async def test_webhook_delivery_spans_in_the_job_trace(aiohttp_server, spans):
    calls = []

    async def hook(request):
        calls.append(request.headers.get("traceparent"))
        return web.Response(status=500 if len(calls) == 1 else 204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    sender = CallbackSender("s3cret", attempts=3, backoff_s=0.01, allow_hosts=LOOPBACK)
    await sender.start()
    try:
        with tracing.tracer.start_as_current_span("job.finish") as finish:
            sender.send(str(server.make_url("/hook")), {"job_id": "j1"})
        for _ in range(200):
            if len(calls) >= 2:
                break
            await asyncio.sleep(0.01)
    finally:
        await sender.close()
    attempts = by_name(spans)["webhook.deliver"]
    assert len(attempts) == 2
    tid = finish.get_span_context().trace_id
    assert {s.context.trace_id for s in attempts} == {tid}
    assert {s.parent.span_id for s in attempts} == {finish.get_span_context().span_id}
    assert sorted(s.attributes["mtb.attempt"] for s in attempts) == [1, 2]
    assert sorted(s.attributes["http.response.status_code"] for s in attempts) == [204, 500]
    assert all(c and c.split("-")[1] == format(tid, "032x") for c in calls)


def test_triton_trace_flags():
    from devstack.triton import trace_args

    assert trace_args(None) == [] and trace_args("") == []
    args = trace_args("http://127.0.0.1:4318")
    pairs = [args[i + 1] for i in range(0, len(args), 2)]
    assert all(a == "--trace-config" for a in args[::2])
    assert "mode=opentelemetry" in pairs and "rate=1" in pairs and "level=TIMESTAMPS" in pairs
    assert "opentelemetry,url=http://127.0.0.1:4318/v1/traces" in pairs
    assert trace_args("http://h:4318/v1/traces/") == trace_args("http://h:4318")


async def test_triton_calls_carry_traceparent_metadata(spans):
    from tests.unit.inference.test_triton import FakeTriton, started

    class Traced(FakeTriton):
        headers: list = []

        async def infer(self, *args, headers=None, **kwargs):
            self.headers.append(headers)
            return await super().infer(*args, **kwargs)

    fake = Traced()
    c = await started(fake)
    try:
        fake.headers.clear()
        await c.translate(["a"], "en", "pt", priority="normal", timeout=5)
        assert fake.headers == [None]  # outside any span: no metadata
        with tracing.tracer.start_as_current_span("inference.translate") as span:
            await c.translate(["a", "b", "c"], "en", "pt", priority="normal", timeout=5)
        ctx = span.get_span_context()
        sent = fake.headers[1:]
        assert sent and all(
            h["traceparent"].startswith(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-") for h in sent
        )
    finally:
        await c.close()
