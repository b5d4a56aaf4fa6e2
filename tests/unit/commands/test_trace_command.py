"""``mtctl trace``: stages and waterfall from recorded Jaeger traces (data_trace/, see its
README), and the command against a fake query API (the real Jaeger: L0_tracing)."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from control_plane.cli import main
from control_plane.commands import trace as tr

DATA = Path(__file__).resolve().parent / "data_trace"
HIGH_JOB = "063d6800-2cb0-43e8-a535-a3c871b92415"
NORMAL_JOB = "7379345f-a915-44ea-8858-65c68efc4306"


def _load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def _spans(name: str) -> list[tr.Span]:
    return tr.spans_from_jaeger(_load(name)["data"])


def _rows(spans) -> dict[str, tr.StageRow]:
    return {row.stage: row for row in tr.stage_rows(spans)}


def _raw(name: str, operation: str) -> list[dict]:
    return [s for s in _load(name)["data"][0]["spans"] if s["operationName"] == operation]


# ---------------------------------------------------------------- stages


def test_real_high_job_stages():
    spans = _spans("job_high_1chunk.json")
    assert len(spans) == 10 and {s.service for s in spans} == {"mt-backend"}
    rows = _rows(spans)
    (submit,) = _raw("job_high_1chunk.json", "job.submit")
    (chunk,) = _raw("job_high_1chunk.json", "chunk.translate")
    wait = chunk["startTime"] - (submit["startTime"] + submit["duration"])
    assert rows["queue wait [high]"].durations_us == [wait]
    assert list(rows)[0] == "queue wait [high]"
    assert rows["API: job.submit"].total_us == submit["duration"]
    assert rows["API: HTTP"].count == 1  # POST /api/v1/translate (server span)
    assert rows["worker: chunk.translate"].total_us == chunk["duration"]
    assert rows["DB"].count == 3  # insert_job, claim_chunk, complete_chunk
    assert rows["cache"].count == 2
    assert rows["inference"].count == 1
    assert rows["assembly"].count == 1  # job.finish
    assert not [stage for stage in rows if stage.startswith("span: ")]


def test_real_three_chunk_job_queue_wait_per_chunk():
    rows = _rows(_spans("job_normal_3chunks.json"))
    assert rows["queue wait [normal]"].count == 3
    assert all(d > 0 for d in rows["queue wait [normal]"].durations_us)
    assert rows["worker: chunk.translate"].count == 3
    assert rows["DB"].count == 7  # insert_job + claim and complete per chunk


def test_synthetic_triton_webhook_and_unknown_spans():
    spans = _spans("synthetic_full_stack.json")
    rows = _rows(spans)
    assert rows["queue wait [critical]"].durations_us == [11_000]  # 30 ms - (1 + 18) ms
    assert rows["Triton: queue"].durations_us == [4_000]  # QUEUE_START -> COMPUTE_START
    # compute counted once: the compute span, not the request span's events as well
    assert rows["Triton: compute"].durations_us == [31_000]
    assert rows["Triton: en-pt"].count == 1
    assert rows["Kafka"].count == 1 and rows["webhook"].count == 1
    assert rows["span: mystery"].durations_us == [2_000]
    assert rows["API: HTTP"].count == 1  # the webhook's client span is not the API


def test_triton_compute_from_events_without_a_compute_span():
    spans = [s for s in _spans("synthetic_full_stack.json") if s.name != "compute"]
    assert _rows(spans)["Triton: compute"].durations_us == [31_000]  # COMPUTE_START -> END


def test_table_columns():
    spans = _spans("synthetic_full_stack.json")
    table = tr.render_table(tr.stage_rows(spans), 100_000)
    head, rule, *lines = table.splitlines()
    assert head.split() == [
        "stage",
        "spans",
        "total",
        "ms",
        "mean",
        "ms",
        "max",
        "ms",
        "%",
        "trace",
    ]
    assert set(rule) == {"-"}
    inference = next(line for line in lines if line.startswith("inference "))
    assert inference.split()[1:] == ["1", "40.0", "40.0", "40.0", "40.0"]


# ---------------------------------------------------------------- waterfall


def _bars(text: str) -> list[str]:
    return [line[line.index("|") + 1 : line.rindex("|")] for line in text.splitlines()[1:]]


def test_waterfall_tree_order_indent_and_scale():
    spans = _spans("job_normal_3chunks.json")
    text = tr.render_waterfall(spans, width=40)
    lines = text.splitlines()
    assert len(lines) == 1 + len(spans)
    names = [line[:40].rstrip() for line in lines[1:]]
    assert names[0] == "POST /api/v1/translate"
    assert names[1] == "  job.submit"
    assert names.count("    chunk.translate") == 3
    assert "      inference.translate" in names and names[-1] == "    job.finish"
    # each chunk's children follow it
    first_chunk = names.index("    chunk.translate")
    assert names[first_chunk + 1] == "      db.claim_chunk"
    bars = _bars(text)
    assert all(len(bar) == 40 for bar in bars)
    assert bars[0].startswith("#")  # the root starts the trace
    assert any(bar.endswith("#") for bar in bars)  # the last span ends it
    t0, t1 = tr.trace_window(spans)
    root = bars[0].count("#")
    assert abs(root - spans[0].duration_us * 40 / (t1 - t0)) <= 1


def test_waterfall_labels_services_and_orphans():
    text = tr.render_waterfall(_spans("synthetic_full_stack.json"), width=50)
    assert "          en-pt [triton]" in text
    assert "            compute [triton]" in text
    assert "\nmystery [mt-backend]" in text  # its parent is not in the trace: a root


def test_report_json():
    report = tr.report_json(HIGH_JOB, _spans("job_high_1chunk.json"))
    assert report["trace_ids"] == ["43b9822e869484a1118c73d61db23ead"]
    assert report["stages"][0]["stage"] == "queue wait [high]"
    assert report["spans"][0]["depth"] == 0 and report["spans"][0]["start_ms"] == 0
    assert json.loads(json.dumps(report)) == report


# ---------------------------------------------------------------- the command


class _FakeJaeger:
    def __init__(self, body: dict) -> None:
        self.body = body
        self.queries: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                url = urllib.parse.urlparse(self.path)
                fake.queries.append({"path": url.path, **urllib.parse.parse_qs(url.query)})
                data = json.dumps(fake.body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_jaeger():
    servers = []

    def make(body):
        servers.append(_FakeJaeger(body))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def test_prints_table_and_waterfall(fake_jaeger, monkeypatch, capsys):
    jaeger = fake_jaeger(_load("job_high_1chunk.json"))
    monkeypatch.setenv("MTB_JAEGER_URL", jaeger.url + "/")
    assert main(["trace", HIGH_JOB]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"job {HIGH_JOB}: 1 trace(s) 43b9822e869484a1118c73d61db23ead")
    assert "queue wait [high]" in out and "      inference.translate" in out
    (query,) = jaeger.queries
    assert query["path"] == "/api/traces"
    assert query["service"] == ["mt-backend"]
    assert json.loads(query["tags"][0]) == {"mtb.job_id": HIGH_JOB}
    assert int(query["start"][0]) < int(query["end"][0])


def test_json_output(fake_jaeger, capsys):
    jaeger = fake_jaeger(_load("job_normal_3chunks.json"))
    assert main(["trace", NORMAL_JOB, "--jaeger-url", jaeger.url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["job_id"] == NORMAL_JOB and len(report["spans"]) == 16


def test_no_jaeger_url_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.delenv("MTB_JAEGER_URL", raising=False)
    assert main(["trace", HIGH_JOB]) == 2
    err = capsys.readouterr().err
    assert "set MTB_JAEGER_URL" in err and ".services/env" in err


def test_unreachable_jaeger(capsys):
    from devstack.daemon import free_port

    url = f"http://127.0.0.1:{free_port()}"
    assert main(["trace", HIGH_JOB, "--jaeger-url", url]) == 1
    err = capsys.readouterr().err
    assert f"Jaeger is unreachable at {url}/api/traces" in err
    assert "Traceback" not in err


def test_no_trace_for_the_job(fake_jaeger, capsys):
    jaeger = fake_jaeger({"data": [], "total": 0, "limit": 0, "offset": 0, "errors": None})
    assert main(["trace", "nope", "--jaeger-url", jaeger.url]) == 1
    err = capsys.readouterr().err
    assert "no trace for job nope" in err and "MTB_TRACING=otlp" in err


def test_jaeger_errors_are_reported(fake_jaeger, capsys):
    jaeger = fake_jaeger({"data": None, "errors": [{"code": 500, "msg": "boom"}]})
    assert main(["trace", HIGH_JOB, "--jaeger-url", jaeger.url]) == 1
    assert "boom" in capsys.readouterr().err


def test_triton_queue_from_the_model_span_and_its_compute_child():
    """What tritonserver (opentelemetry mode, level=TIMESTAMPS) really sends: InferRequest
    -> the model's span (REQUEST_START, QUEUE_START, REQUEST_END) -> compute
    (COMPUTE_START ... COMPUTE_END); recorded from a run against the local Triton."""
    model = tr.Span("t", "m1", "g1", "translator", "triton", 1_000, 13_215,
                    events=[(1_000, "REQUEST_START"), (1_200, "QUEUE_START"),
                            (14_215, "REQUEST_END")])  # fmt: skip
    compute = tr.Span("t", "c1", "m1", "compute", "triton", 2_200, 10_995,
                      events=[(2_200, "COMPUTE_START"), (13_195, "COMPUTE_END")])  # fmt: skip
    grpc = tr.Span("t", "g1", None, "InferRequest", "triton", 990, 13_241)
    rows = _rows([grpc, model, compute])
    assert rows["Triton: queue"].durations_us == [1_000]  # QUEUE_START -> compute's start
    assert rows["Triton: compute"].durations_us == [10_995]
