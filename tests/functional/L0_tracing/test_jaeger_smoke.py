"""One span tree sent over OTLP gRPC to the shared Jaeger comes back from its query API
(by trace id, v1 and v3, and by the ``mtb.job_id`` tag search that `mtctl trace` uses),
and `mtctl trace` renders it."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from control_plane.cli import main


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read().decode())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def _poll(url: str, found, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        body = _get(url)
        if body is not None and found(body):
            return body
        assert time.monotonic() < deadline, f"nothing from {url} after {timeout} s: {body}"
        time.sleep(0.2)


def test_span_over_otlp_is_found_by_id_and_by_job_tag(jaeger, capsys):
    service = f"mtb-smoke-{uuid.uuid4().hex[:8]}"  # alone under its name in the store
    job_id = str(uuid.uuid4())
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=jaeger.env["MTB_OTLP_ENDPOINT"], insecure=True)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("smoke")
    with tracer.start_as_current_span("job.submit", attributes={"mtb.job_id": job_id}) as root:
        time.sleep(0.01)
    with tracer.start_as_current_span(
        "chunk.translate",
        context=otel_trace.set_span_in_context(root),
        attributes={"mtb.job_id": job_id, "mtb.priority": "high"},
    ):
        with tracer.start_as_current_span("inference.translate"):
            time.sleep(0.02)
    provider.shutdown()
    trace_id = format(root.get_span_context().trace_id, "032x")
    base = jaeger.url

    v1 = _poll(f"{base}/api/traces/{trace_id}", lambda b: len(b["data"][0]["spans"]) == 3)
    trace = v1["data"][0]
    assert trace["traceID"] == trace_id
    assert {s["operationName"] for s in trace["spans"]} == {
        "job.submit",
        "chunk.translate",
        "inference.translate",
    }
    assert {p["serviceName"] for p in trace["processes"].values()} == {service}

    v3 = _poll(f"{base}/api/v3/traces/{trace_id}", lambda b: "result" in b)
    names = {
        span["name"]
        for rs in v3["result"]["resourceSpans"]
        for ss in rs["scopeSpans"]
        for span in ss["spans"]
    }
    assert names == {"job.submit", "chunk.translate", "inference.translate"}

    query = urllib.parse.urlencode({"service": service, "tags": json.dumps({"mtb.job_id": job_id})})
    found = _poll(f"{base}/api/traces?{query}", lambda b: bool(b["data"]))
    assert [t["traceID"] for t in found["data"]] == [trace_id]

    assert main(["trace", job_id, "--jaeger-url", base, "--service", service]) == 0
    out = capsys.readouterr().out
    assert trace_id in out
    assert "queue wait [high]" in out and "inference" in out
    assert "\n    inference.translate" in out  # depth 2 in the waterfall
