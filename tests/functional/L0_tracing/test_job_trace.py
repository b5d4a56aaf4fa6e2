"""One trace per job in a real Jaeger: REST -> PostgreSQL -> Kafka -> `mtctl worker` ->
Triton (its own spans, OTLP over HTTP) -> result, and the same for an ingest-topic job;
spans in parent/child order with the job's attributes."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from tests.functional.conftest import REPO

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def traced_triton(triton_factory, model_dir, jaeger):
    otlp_http = f"http://127.0.0.1:{jaeger.ports['otlp_http']}"
    return triton_factory(
        REPO / "model_repository",
        extra_env={"MTB_MODEL_DIR": str(model_dir)},
        trace_url=otlp_http,
    )


@pytest.fixture(scope="module")
def stack(make_stack, traced_triton, jaeger):
    return make_stack(
        "tracing",
        MTB_INFERENCE="triton",
        MTB_TRITON_URL=traced_triton.url,
        MTB_TRACING="otlp",
        MTB_OTLP_ENDPOINT=jaeger.env["MTB_OTLP_ENDPOINT"],
        MTB_TRACING_SAMPLE_RATIO="1.0",
    )


def find_trace(jaeger_url: str, job_id: str, timeout: float = 60) -> dict:
    """The trace holding the job's spans (processes flush spans every few seconds)."""
    query = urllib.parse.urlencode(
        {"service": "mt-backend", "tags": json.dumps({"mtb.job_id": job_id}), "limit": 20}
    )
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"{jaeger_url}/api/traces?{query}", timeout=10) as r:
            data = json.load(r)["data"]
        if data:
            trace_id = data[0]["traceID"]
            with urllib.request.urlopen(f"{jaeger_url}/api/traces/{trace_id}", timeout=10) as r:
                trace = json.load(r)["data"][0]
            names = {s["operationName"] for s in trace["spans"]}
            services = {p["serviceName"] for p in trace["processes"].values()}
            # every process exports in its own batches: wait for serve's submit span too
            if {"job.submit", "chunk.translate", "inference.translate"} <= names and (
                "triton" in services
            ):
                return trace
        if time.monotonic() > deadline:
            return trace if data else {}
        time.sleep(1.0)


def has_triton_spans(trace: dict) -> bool:
    return any(p["serviceName"] == "triton" for p in trace.get("processes", {}).values())


def once_more_without_triton(trace: dict, job_id: str, attempt: int) -> bool:
    """True when a job's trace came without Triton's spans on the first attempt, which
    then gets one more job. Cause (found 2026-11-30, session 9): Triton's gRPC frontend
    ignores the ``traceparent`` of about 2-3% of requests (7 of 300 with a bare gRPC client
    and a fresh context each, 0 of 300 over its HTTP endpoint) and exports that request's
    spans as a trace of their own; the job's trace then never gets them (README,
    "Observability"). The second job must carry them, so a Triton that never joins a
    trace still fails."""
    if attempt > 0 or not trace or has_triton_spans(trace):
        return False
    names = sorted(s["operationName"] for s in trace["spans"])
    print(f"job {job_id}: no Triton span in its trace after a minute ({names}); once more")
    return True


def parents(trace: dict) -> dict[str, str | None]:
    out = {}
    for s in trace["spans"]:
        refs = [r for r in s.get("references", []) if r["refType"] == "CHILD_OF"]
        out[s["spanID"]] = refs[0]["spanID"] if refs else None
    return out


def ancestors(trace: dict, span_id: str) -> list[str]:
    by_id = {s["spanID"]: s for s in trace["spans"]}
    up, chain = parents(trace), []
    while (span_id := up.get(span_id)) is not None and span_id in by_id:
        chain.append(by_id[span_id]["operationName"])
    return chain


def spans_named(trace: dict, name: str) -> list[dict]:
    return [s for s in trace["spans"] if s["operationName"] == name]


def tags(span: dict) -> dict:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


def check_job_trace(trace: dict, job_id: str) -> None:
    assert trace, f"no trace in Jaeger for job {job_id}"
    services = {pid: p["serviceName"] for pid, p in trace["processes"].items()}
    assert {"mt-backend", "triton"} <= set(services.values()), services
    (submit,) = spans_named(trace, "job.submit")
    assert tags(submit)["mtb.job_id"] == job_id
    chunk = spans_named(trace, "chunk.translate")[0]
    assert "job.submit" in ancestors(trace, chunk["spanID"])
    assert tags(chunk)["mtb.job_id"] == job_id and tags(chunk)["mtb.priority"] == "high"
    inference = spans_named(trace, "inference.translate")[0]
    assert "chunk.translate" in ancestors(trace, inference["spanID"])
    triton = [s for s in trace["spans"] if services[s["processID"]] == "triton"]
    assert triton, "no span of Triton's own in the job's trace"
    assert all("inference.translate" in ancestors(trace, s["spanID"]) for s in triton)


def test_rest_job_is_one_trace_through_kafka_worker_and_triton(stack, jaeger):
    texts = ["The meeting starts at noon. Please bring the report.", "Bring two copies."]
    for attempt, text in enumerate(texts):
        sub = stack.submit(text, "high")
        job = stack.wait(sub["job_id"], timeout=120)
        assert job["status"] == "completed", job
        trace = find_trace(jaeger.url, sub["job_id"])
        if not once_more_without_triton(trace, sub["job_id"], attempt):
            break
    check_job_trace(trace, sub["job_id"])
    server = [s for s in trace["spans"] if s["operationName"].startswith("POST ")]
    assert server and "job.submit" not in ancestors(trace, server[0]["spanID"])


def test_ingest_job_continues_the_producers_trace(stack, jaeger):
    for attempt, content in enumerate(
        ["The printer is out of paper again.", "The scanner is out of toner again."]
    ):
        trace, trace_id, job_id = ingest_job(stack, jaeger, content)
        if not once_more_without_triton(trace, job_id, attempt):
            break
    check_job_trace(trace, job_id)
    assert trace["traceID"].lstrip("0") == trace_id.lstrip("0")  # the producer's trace


def ingest_job(stack, jaeger, content: str) -> tuple[dict, str, str]:
    """(the job's trace, the producer's trace id, the job id) of one ingest-topic job."""
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    key = stack.service.keys["enterprise"]
    request_id = f"traced-{uuid.uuid4().hex[:8]}"
    body = {
        "api_key": key,
        "request_id": request_id,
        "content": content,
        "source_language": "en",
        "target_language": "pt",
        "priority": "high",
    }
    stack.produce(
        "ingest", [json.dumps(body).encode()], [request_id.encode()], {"traceparent": traceparent}
    )
    deadline = time.monotonic() + 60
    rows: list = []
    while time.monotonic() < deadline:
        rows = stack.sql("select id, status from jobs where source_text = %(t)s", t=body["content"])
        if rows and rows[0][1] == "completed":
            break
        time.sleep(0.5)
    assert rows and rows[0][1] == "completed", rows
    return find_trace(jaeger.url, rows[0][0]), trace_id, rows[0][0]
